package guesttext

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		limit    int
		want     string
	}{
		{"plain", "hello world", 0, "hello world"},
		{"non-ascii letters stay", "grüße, 世界", 0, "grüße, 世界"},
		{"terminal escape", "\x1b[2J\x1b]0;pwned\x07", 0, `\x1b[2J\x1b]0;pwned\x07`},
		{"newline and cr", "a\r\nb", 0, `a\x0d\x0ab`},
		{"tab on one line", "a\tb", 0, `a\x09b`},
		{"invalid utf-8", "a\xff\xfeb", 0, `a\xff\xfeb`},
		{"c1 control", "a\u009bb", 0, `a\x9bb`},
		{"bidi override", "abc\u202efed", 0, `abc\u202efed`},
		{"zero width", "a\u200bb", 0, `a\u200bb`},
		{"backslash", `a\x1bb`, 0, `a\\x1bb`},
		{"cut", "abcdef", 3, "abc…(3 more bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Quote(tc.in, tc.limit); got != tc.want {
				t.Errorf("Quote(%q, %d): got %q, want %q", tc.in, tc.limit, got, tc.want)
			}
		})
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		lines int
		limit int
		want  string
	}{
		{"empty", "", 3, 0, "(empty)"},
		{"only newlines", "\r\n\n", 3, 0, "(empty)"},
		{"last lines", "1\n2\n3\n4\n", 2, 0, "3\n4"},
		{"crlf", "a\r\nb\r\n", 5, 0, "a\nb"},
		{"escapes inside lines", "ok\n\x1b[31mred\x1b[0m\tx\n", 5, 0, "ok\n\\x1b[31mred\\x1b[0m\tx"},
		{"limit drops the partial line", "aaaa\nbb\ncc\n", 5, 7, "bb\ncc"},
		{"limit inside a utf-8 sequence", "x\n" + strings.Repeat("é", 10) + "\nend", 5, 8, "end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Tail([]byte(tc.in), tc.lines, tc.limit); got != tc.want {
				t.Errorf("Tail(%q, %d, %d): got %q, want %q", tc.in, tc.lines, tc.limit, got, tc.want)
			}
		})
	}
}

// TestOutputIsSafe feeds every byte value and a selection of runes and checks that the
// result holds no control or format character (a newline only from Tail, between lines)
// and is valid UTF-8.
func TestOutputIsSafe(t *testing.T) {
	var in strings.Builder
	for b := 0; b < 256; b++ {
		in.WriteByte(byte(b))
	}
	for _, r := range []rune{'\u061c', '\u200e', '\u202a', '\u2066', '\u2069', '\ufeff', '\u2028', '\u2029', '\u0085'} {
		in.WriteRune(r)
	}
	check := func(what, s string, newlines bool) {
		if !utf8.ValidString(s) {
			t.Errorf("%s: output is not valid UTF-8: %q", what, s)
		}
		for _, r := range s {
			if (r == '\n' && newlines) || r == '\t' && newlines {
				continue
			}
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
				t.Errorf("%s: output holds %U: %q", what, r, s)
			}
		}
	}
	check("Quote", Quote(in.String(), 1<<20), false)
	check("Tail", Tail([]byte(in.String()), 100, 1<<20), true)
}

func TestBounded(t *testing.T) {
	huge := strings.Repeat("\x1b", 1<<20)
	if got := Quote(huge, 100); len(got) > 100*4+32 {
		t.Errorf("Quote of 1 MiB with limit 100: %d bytes", len(got))
	}
	lines := strings.Repeat(strings.Repeat("x", 100)+"\n", 10000)
	if got := Tail([]byte(lines), 20, 0); strings.Count(got, "\n") != 19 {
		t.Errorf("Tail of 10000 lines, 20 wanted: got %d lines", strings.Count(got, "\n")+1)
	}
}
