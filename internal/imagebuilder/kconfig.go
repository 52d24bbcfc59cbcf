package imagebuilder

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// KconfigOption is one assignment of a kernel configuration file or fragment.
type KconfigOption struct {
	Name  string // CONFIG_FOO
	Value string // y, m, n, a number or a quoted string; "n" for "# CONFIG_FOO is not set"
	Line  int
}

// ParseKconfig reads the assignments of a .config file or fragment: `CONFIG_FOO=value`
// lines and `# CONFIG_FOO is not set` comments (as value "n"). Other comments and blank
// lines are skipped; any other line is an error naming its number. Later assignments of a
// name replace earlier ones, as in Kconfig.
func ParseKconfig(data []byte) ([]KconfigOption, error) {
	var (
		opts  []KconfigOption
		index = map[string]int{}
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		var name, value string
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "#"):
			rest, ok := strings.CutSuffix(strings.TrimSpace(strings.TrimPrefix(line, "#")), " is not set")
			if !ok || !strings.HasPrefix(rest, "CONFIG_") || strings.ContainsAny(rest, " \t=") {
				continue // an ordinary comment
			}
			name, value = rest, "n"
		default:
			var ok bool
			name, value, ok = strings.Cut(line, "=")
			if !ok || !strings.HasPrefix(name, "CONFIG_") || value == "" {
				return nil, fmt.Errorf("line %d: %q is not CONFIG_NAME=value", n, line)
			}
		}
		opt := KconfigOption{Name: name, Value: value, Line: n}
		if i, ok := index[name]; ok {
			opts[i] = opt
			continue
		}
		index[name] = len(opts)
		opts = append(opts, opt)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kernel config: %w", err)
	}
	return opts, nil
}

// VerifyConfig checks that every option of fragment has its value in config (the .config
// written by `make olddefconfig`). Kconfig silently drops an option whose dependencies are
// not met, so this is how a fragment that asks for the impossible is caught. The error
// names each option that did not land, one per line.
func VerifyConfig(fragment, config []byte) error {
	want, err := ParseKconfig(fragment)
	if err != nil {
		return fmt.Errorf("parse fragment: %w", err)
	}
	gotOpts, err := ParseKconfig(config)
	if err != nil {
		return fmt.Errorf("parse .config: %w", err)
	}
	got := make(map[string]string, len(gotOpts))
	for _, o := range gotOpts {
		got[o.Name] = o.Value
	}
	var problems []string
	for _, w := range want {
		g, ok := got[w.Name]
		if sameKconfigValue(w.Value, g, ok) {
			continue
		}
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: want %s, got unset (a dependency is missing)", w.Name, w.Value))
		case g == "n":
			problems = append(problems, fmt.Sprintf("%s: want %s, got n (a dependency is missing or another option excludes it)", w.Name, w.Value))
		default:
			problems = append(problems, fmt.Sprintf("%s: want %s, got %s", w.Name, w.Value, g))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d kernel config option(s) did not land in .config:\n  %s",
			len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}

// sameKconfigValue reports whether a wanted value is satisfied by the value in .config
// (present says whether .config mentions the option at all). "n" is satisfied by an
// absent option; numbers compare by value (64 == 0x40).
func sameKconfigValue(want, got string, present bool) bool {
	if want == "n" {
		return !present || got == "n"
	}
	if !present {
		return false
	}
	if want == got {
		return true
	}
	w, werr := strconv.ParseInt(want, 0, 64)
	g, gerr := strconv.ParseInt(got, 0, 64)
	return werr == nil && gerr == nil && w == g
}
