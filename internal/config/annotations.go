package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Annotation name prefixes: an annotation is <prefix><section>.<name>, e.g.
// io.vessel.config.hypervisor.default_vcpus. Kata's prefix is accepted for the same names.
const (
	PrefixVessel = "io.vessel.config."
	PrefixKata   = "io.katacontainers.config."
)

// maxAnnotationValue bounds an annotation value; longer values are refused unread.
const maxAnnotationValue = 16 << 10

// IsConfigAnnotation reports whether name is in one of the configuration annotation
// namespaces (whether or not it names a known key).
func IsConfigAnnotation(name string) bool {
	return strings.HasPrefix(name, PrefixVessel) || strings.HasPrefix(name, PrefixKata)
}

// WithAnnotations returns a copy of c with the configuration annotations among annotations
// applied; other annotations are ignored and c is not changed. An annotation is refused when
// it names no key, is not enabled by runtime.enable_annotations, has a malformed or
// out-of-range value, names a path matching none of the key's globs, or asks for more vCPUs
// or memory than host has or the maximum allows. All refusals are reported, one error each
// (a *FieldError naming the annotation), in name order.
func (c *Config) WithAnnotations(annotations map[string]string, host Host) (*Config, error) {
	names := make([]string, 0, len(annotations))
	for name := range annotations {
		if IsConfigAnnotation(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return c.Clone(), nil
	}
	sort.Strings(names)

	allow, err := compileAll(c.Runtime.EnableAnnotations)
	if err != nil {
		return nil, fmt.Errorf("runtime.enable_annotations: %w", err)
	}
	out := c.Clone()
	root := reflect.ValueOf(out).Elem()
	var errs []error
	setBy := map[string]string{} // key full name -> annotation that set it
	for _, name := range names {
		value := annotations[name]
		k, err := c.applyAnnotation(root, allow, name, value)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := setBy[k.Section+"."+k.Replaces]; k.Replaces != "" && dup {
			errs = append(errs, annotationError(name, value, "conflicts with "+prev+": set only one", ""))
			continue
		}
		if prev, dup := setBy[k.FullName()]; dup && annotations[prev] != value {
			errs = append(errs, annotationError(name, value, "conflicts with "+prev+" = "+strconv.Quote(annotations[prev]), ""))
			continue
		}
		setBy[k.FullName()] = name
	}
	errs = append(errs, out.checkHost(host, setBy, annotations)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := out.validate(""); err != nil {
		return nil, fmt.Errorf("configuration after annotations: %w", err)
	}
	return out, nil
}

// applyAnnotation parses one annotation and sets its key in root (the copy being built).
// Globs are read from c, the configuration before any annotation.
func (c *Config) applyAnnotation(root reflect.Value, allow []*regexp.Regexp, name, value string) (Key, error) {
	short := strings.TrimPrefix(strings.TrimPrefix(name, PrefixVessel), PrefixKata)
	section, base, _ := strings.Cut(short, ".")
	k, ok := lookupAnnotation(section, base)
	if !ok {
		return Key{}, annotationError(name, value, "unknown configuration annotation", "the annotations listed in docs/configuration.md")
	}
	if !annotationEnabled(allow, section, base) {
		return k, annotationError(name, value, "not enabled by runtime.enable_annotations", "")
	}
	if len(value) > maxAnnotationValue {
		return k, annotationError(name, value, fmt.Sprintf("value longer than %d bytes", maxAnnotationValue), k.AllowedText())
	}
	f := fieldOf(root, k)
	v := reflect.New(f.Type()).Elem() // the new value, set into f once it is accepted
	switch f.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return k, annotationError(name, value, "not a boolean", k.AllowedText())
		}
		v.SetBool(b)
	case reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(value, 10, f.Type().Bits())
		if err != nil {
			return k, annotationError(name, value, "not an unsigned decimal integer", k.AllowedText())
		}
		if n < k.Min || n > k.Max {
			return k, annotationError(name, value, "out of range", k.AllowedText())
		}
		v.SetUint(n)
	case reflect.String:
		s := value
		if k.Append {
			s = strings.TrimSpace(f.String() + " " + strings.TrimSpace(value))
		}
		if err := k.checkString(s); err != nil {
			return k, annotationError(name, value, err.Error(), k.AllowedText())
		}
		v.SetString(s)
	case reflect.Slice:
		list, err := splitList(k.syntax, value)
		if err != nil {
			return k, annotationError(name, value, err.Error(), k.syntax.String()+" of "+k.AllowedText())
		}
		if err := k.checkValue(reflect.ValueOf(list)); err != nil {
			return k, annotationError(name, value, err.Error(), k.AllowedText())
		}
		v.Set(reflect.ValueOf(list))
	}
	if reason, allowed := k.refusal(v, fieldOf(reflect.ValueOf(Default()).Elem(), k)); reason != "" {
		return k, annotationError(name, value, reason, allowed)
	}
	if k.Globs != "" {
		if err := c.matchGlobs(k, v.String()); err != nil {
			return k, annotationError(name, value, err.Error(), "")
		}
	}
	f.Set(v)
	if k.Replaces != "" {
		rk, _ := lookupKey(k.Section, k.Replaces)
		fieldOf(root, rk).SetString("")
	}
	return k, nil
}

// matchGlobs accepts value when it matches one of the key's configured glob patterns.
func (c *Config) matchGlobs(k Key, value string) error {
	gk, _ := lookupKey(k.Section, k.Globs)
	globs := fieldOf(reflect.ValueOf(c).Elem(), gk).Interface().([]string)
	for _, g := range globs {
		if ok, err := path.Match(g, value); err == nil && ok {
			return nil
		}
	}
	if len(globs) == 0 {
		return fmt.Errorf("%s is empty, so no path may be chosen by annotation", gk.FullName())
	}
	return fmt.Errorf("matches none of %s = %s", gk.FullName(), formatValue(reflect.ValueOf(globs)))
}

// checkHost refuses vCPU and memory annotations beyond the host or the effective maximum.
func (c *Config) checkHost(host Host, setBy map[string]string, annotations map[string]string) []error {
	var errs []error
	h := &c.Hypervisor
	maxV := c.Limits(host).MaxVCPUs
	if name, ok := setBy["hypervisor.default_maxvcpus"]; ok && host.CPUs > 0 && h.DefaultMaxVCPUs > host.CPUs {
		errs = append(errs, annotationError(name, annotations[name],
			fmt.Sprintf("exceeds the host's %d CPUs", host.CPUs), fmt.Sprintf("0 to %d", host.CPUs)))
	}
	if name, ok := setBy["hypervisor.default_vcpus"]; ok {
		switch {
		case host.CPUs > 0 && h.DefaultVCPUs > host.CPUs:
			errs = append(errs, annotationError(name, annotations[name],
				fmt.Sprintf("exceeds the host's %d CPUs", host.CPUs), fmt.Sprintf("1 to %d", min(host.CPUs, maxV))))
		case h.DefaultVCPUs > maxV:
			errs = append(errs, annotationError(name, annotations[name],
				fmt.Sprintf("exceeds the maximum of %d vCPUs", maxV), fmt.Sprintf("1 to %d", maxV)))
		}
	}
	if name, ok := setBy["hypervisor.default_memory"]; ok {
		if maxM := c.Limits(host).MaxMemoryMiB; h.DefaultMemory > maxM {
			errs = append(errs, annotationError(name, annotations[name],
				fmt.Sprintf("exceeds the maximum of %d MiB", maxM), fmt.Sprintf("64 to %d", maxM)))
		}
	}
	return errs
}

func annotationError(name, value, reason, allowed string) error {
	const show = 128
	if len(value) > show {
		value = value[:show] + "..."
	}
	return &FieldError{Key: name, Value: strconv.Quote(value), Reason: reason, Allowed: allowed}
}

// lookupAnnotation finds the key an annotation base name overrides.
func lookupAnnotation(section, base string) (Key, bool) {
	if base == "" {
		return Key{}, false
	}
	for _, k := range keyTable {
		if k.Section == section && k.Annotation == base {
			return k, true
		}
	}
	return Key{}, false
}

func annotationEnabled(allow []*regexp.Regexp, section, base string) bool {
	for _, re := range allow {
		if re.MatchString(section+"."+base) || section == "hypervisor" && re.MatchString(base) {
			return true
		}
	}
	return false
}

func compileAnchored(s string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + s + `)$`)
}

func compileAll(exprs []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(exprs))
	for _, s := range exprs {
		re, err := compileAnchored(s)
		if err != nil {
			return nil, fmt.Errorf("regexp %q: %w", s, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// splitList parses an annotation list value. Empty elements of separated lists are dropped.
func splitList(syntax listSyntax, value string) ([]string, error) {
	var parts []string
	switch syntax {
	case listJSON:
		if err := json.Unmarshal([]byte(value), &parts); err != nil {
			return nil, errors.New("not a JSON array of strings")
		}
		if parts == nil {
			parts = []string{}
		}
		return parts, nil
	case listSemicolon:
		parts = strings.Split(value, ";")
	case listComma:
		parts = strings.Split(value, ",")
	default:
		return nil, errors.New("list syntax not defined")
	}
	out := []string{}
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// KernelModule splits an agent.kernel_modules entry into the module name and its parameters.
func KernelModule(entry string) (name string, params []string) {
	f := strings.Fields(entry)
	if len(f) == 0 {
		return "", nil
	}
	return f[0], f[1:]
}
