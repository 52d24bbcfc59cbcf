// Package guesttext makes text that came from a guest (its serial console, strings the
// agent sends) safe to put into a host log line or error message. Everything a guest
// writes is attacker-controlled: it may hold terminal escape sequences (which rewrite an
// operator's terminal), carriage returns and bidirectional-override characters (which
// make a log line say something else than it holds), invalid UTF-8, and any length.
//
// Quote and Tail escape every control character (C0, DEL, C1), the Unicode format
// characters that reorder or hide text, and every byte that is not valid UTF-8, as Go
// escapes (\x1b, \u202e); printable text, including non-ASCII letters, stays readable.
// Both bound their output.
package guesttext

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultLimit is the most bytes of guest text Quote keeps for one value in a host
// message: enough for an error string, short enough that a guest cannot flood a log.
const DefaultLimit = 1024

// Quote returns s with every unsafe character escaped, on one line (a newline is
// escaped too), keeping at most limit bytes of s (DefaultLimit if limit <= 0); a cut is
// marked with how many bytes were left out.
func Quote(s string, limit int) string {
	if limit <= 0 {
		limit = DefaultLimit
	}
	var b strings.Builder
	cut := 0
	if len(s) > limit {
		cut = len(s) - limit
		s = s[:limit]
	}
	escape(&b, s, false)
	if cut > 0 {
		fmt.Fprintf(&b, "…(%d more bytes)", cut)
	}
	return b.String()
}

// Tail returns the last lines lines of b (carriage returns dropped, a trailing newline
// ignored), each escaped like Quote, joined by newlines. At most limit bytes of the end
// of b are looked at (DefaultLimit×lines if limit <= 0). An empty b is "(empty)".
func Tail(b []byte, lines, limit int) string {
	if limit <= 0 {
		limit = DefaultLimit * lines
	}
	if len(b) > limit {
		b = b[len(b)-limit:]
		// The cut may split a line and a UTF-8 sequence: drop the partial first line.
		if i := strings.IndexByte(string(b), '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	s := strings.ReplaceAll(string(b), "\r", "")
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "(empty)"
	}
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	var out strings.Builder
	for i, l := range all {
		if i > 0 {
			out.WriteByte('\n')
		}
		escape(&out, l, true)
	}
	return out.String()
}

// escape writes s to b with unsafe runes escaped. A tab is kept when keepTab is set
// (console lines use it for alignment); everything else below U+0020 is escaped.
func escape(b *strings.Builder, s string, keepTab bool) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case r == '\t' && keepTab:
			b.WriteByte('\t')
		case r == '\\':
			b.WriteString(`\\`)
		case unsafeRune(r):
			if r < 0x100 {
				fmt.Fprintf(b, `\x%02x`, r)
			} else {
				fmt.Fprintf(b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
}

// unsafeRune reports whether r must not reach a host log as it is: control characters
// (C0, DEL, C1) and format characters (bidirectional overrides and isolates, zero-width
// characters, the byte order mark), and the line and paragraph separators.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}
