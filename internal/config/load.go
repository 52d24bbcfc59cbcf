package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// maxFileSize bounds a configuration file: anything larger is not a configuration.
const maxFileSize = 1 << 20

// Load reads the configuration in this order: path when not empty, the file named by
// VESSEL_CONFIG, /etc/vessel/configuration.toml if it exists, and otherwise the built-in
// defaults. The result is validated.
func Load(path string) (*Config, error) {
	c, _, err := LoadFrom(path, os.Getenv, SystemPath)
	return c, err
}

// LoadFrom is Load with the environment and the system path given explicitly. It also
// returns the file that was read, or "" when the built-in defaults were used. A file named
// explicitly or by the environment must exist; the system file may be absent.
func LoadFrom(explicit string, getenv func(string) string, systemPath string) (*Config, string, error) {
	file, err := Find(explicit, getenv, systemPath)
	if err != nil {
		return nil, "", err
	}
	if file == "" {
		c := Default()
		if err := c.Validate(); err != nil {
			return nil, "", fmt.Errorf("built-in defaults: %w", err)
		}
		return c, "", nil
	}
	c, err := LoadFile(file)
	if err != nil {
		return nil, "", err
	}
	return c, file, nil
}

// Find returns the configuration file the load order selects, or "" for the built-in
// defaults.
func Find(explicit string, getenv func(string) string, systemPath string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if getenv != nil {
		if p := getenv(EnvVar); p != "" {
			return p, nil
		}
	}
	if systemPath == "" {
		return "", nil
	}
	switch _, err := os.Stat(systemPath); {
	case err == nil:
		return systemPath, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	default:
		return "", fmt.Errorf("configuration %s: %w", systemPath, err)
	}
}

// LoadFile reads, parses and validates one configuration file.
func LoadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("configuration %s: larger than %d bytes", path, maxFileSize)
	}
	return Parse(data, path)
}

// Parse reads TOML over the built-in defaults and validates the result; file names the
// source in errors. Unknown keys are errors.
func Parse(data []byte, file string) (*Config, error) {
	if file == "" {
		file = "configuration"
	}
	c := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := undecoded(md); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	c.fillNilLists()
	if err := c.validate(file); err != nil {
		return nil, err
	}
	return c, nil
}

// undecoded reports keys the file has and Config does not, the outermost of each only.
func undecoded(md toml.MetaData) error {
	und := md.Undecoded()
	if len(und) == 0 {
		return nil
	}
	var keys, tables []string
	for _, k := range und {
		if len(k) > 1 && slices.ContainsFunc(und, func(p toml.Key) bool {
			return len(p) < len(k) && slices.Equal(p, k[:len(p)])
		}) {
			continue // inside an unknown table already reported
		}
		keys = append(keys, k.String())
		if md.Type(k...) == "Hash" && len(k) == 2 {
			tables = append(tables, k.String())
		}
	}
	sort.Strings(keys)
	hint := ""
	if len(tables) > 0 {
		sort.Strings(tables)
		hint = fmt.Sprintf(" (sub-tables such as Kata's [%s] are not used: put the keys directly under [%s]; pick the hypervisor with hypervisor.driver; vessel config import-kata converts a Kata configuration)",
			tables[0], strings.SplitN(tables[0], ".", 2)[0])
	}
	return fmt.Errorf("unknown key %s%s", strings.Join(keys, ", "), hint)
}

// Encode writes c as TOML: every key, in table order within each section. A comment line
// above a key that is not supported, or has values that are not, says so and why.
func (c *Config) Encode(w io.Writer) error {
	var b bytes.Buffer
	root := reflect.ValueOf(c).Elem()
	section := ""
	for _, k := range keyTable {
		if k.Section != section {
			if section != "" {
				b.WriteByte('\n')
			}
			section = k.Section
			fmt.Fprintf(&b, "[%s]\n", section)
		}
		switch {
		case !k.Supported():
			fmt.Fprintf(&b, "# Not supported, only the default is accepted: %s.\n", k.Unsupported)
		case len(k.UnsupportedValues) > 0:
			fmt.Fprintf(&b, "# Supported: %s.\n", k.SupportText())
		}
		if err := toml.NewEncoder(&b).Encode(map[string]any{k.Name: fieldOf(root, k).Interface()}); err != nil {
			return fmt.Errorf("encode configuration key %s: %w", k.FullName(), err)
		}
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	return nil
}

// fillNilLists turns nil lists into empty ones so that every key is printed.
func (c *Config) fillNilLists() {
	root := reflect.ValueOf(c).Elem()
	for _, k := range keyTable {
		if f := fieldOf(root, k); f.Kind() == reflect.Slice && f.IsNil() {
			f.Set(reflect.MakeSlice(f.Type(), 0, 0))
		}
	}
}
