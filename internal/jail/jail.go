// Package jail confines a program (the VMM) in the moment before it runs: a binary that
// starts a VMM starts itself instead, with the jail entry marker as argv[0], and the entry
// applies the limits it is given on its own thread and then execs the program in place.
// The program keeps the entry's pid and start time, so whoever started it tracks, waits
// for and hands over the program as if it had started it directly.
//
// The entry is the same executable as its caller: every binary that starts a jailed
// program calls Main first in main (and every test binary that does, first in TestMain).
// Main returns at once unless argv[0] is Argv0. The argument protocol, produced by
// Spec.argv and read by parse, is
//
//	vessel-jail [-keep-caps=NAME,...] [-fds=N] [-rlimit=NAME=VALUE ...]
//	            [-ro=PATH ...] [-rro=PATH ...] [-rw=PATH ...] [-link=PATH ...]
//	            -- PATH ARG...
//
// where -keep-caps names the capabilities the program may keep (lower case, without
// "cap_"; none when absent), -fds says that descriptors 3 to 3+N-1 are passed to the
// program (0, 1 and 2 always are; every other descriptor is closed at exec), and each
// -rlimit sets a resource limit's soft and hard value (never above the hard limit the
// entry already has), and the lists after it describe a minimal root file system
// (Root), whose -ro, -rro and -rw paths come as the caller's clones of them, in that
// order, from descriptor 3+N on (PassRoot). What the entry does, in order: it moves into
// the minimal root when given one (and closes the clones' descriptors), sets the
// resource limits, marks every descriptor but those close-on-exec, sets
// no_new_privs, drops every capability not kept from the bounding set and clears the
// ambient and inheritable sets, sets the permitted and effective sets to the kept ones it
// holds, checks the result, and execs PATH with ARG... and its own environment. Any
// failure is reported on stderr and the entry exits with status ExitFailed; nothing runs
// half-confined.
package jail

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/containerd/errdefs"
)

// Argv0 is the argv[0] that makes a process the jail entry.
const Argv0 = "vessel-jail"

// ExitFailed is the entry's exit status when it cannot confine or exec the program.
const ExitFailed = 126

// selfExe is the running executable; exec-ing it runs the caller's own binary even after
// the file was replaced or removed.
const selfExe = "/proc/self/exe"

// Rlimit is one resource limit: the entry sets its soft and hard values to Value, or
// to the hard limit the entry has when that is lower.
type Rlimit struct {
	Resource Resource
	Value    uint64
}

// Spec is what the entry does before it execs Path.
type Spec struct {
	// Path is the program, an absolute path; it gets Path as its argv[0].
	Path string
	// Args are the program's arguments after argv[0].
	Args []string
	// KeepCaps are the only capabilities the program may hold: each in its permitted and
	// effective sets if the entry holds it, and no other anywhere (bounding set too).
	KeepCaps []Cap
	// ExtraFiles is how many descriptors after stderr the program inherits (3 ... 3+n-1,
	// as exec.Cmd.ExtraFiles numbers them).
	ExtraFiles int
	// Rlimits are set before the exec.
	Rlimits []Rlimit
	// Root, when set, replaces the program's file system by a minimal one (root_linux.go).
	// The entry must run in a mount namespace of its own, created by the caller's clone
	// flags together with a user namespace in which it has CAP_SYS_ADMIN, and the caller
	// passes it the clones of the root's paths (PassRoot).
	Root *Root
}

// Root is a new, read-only root file system (an empty tmpfs) holding only the listed host
// paths, each at its own path. Every path is absolute and clean, and a root holds at
// least one path. The caller (host root) clones the paths and passes the clones
// (PassRoot), so the program's ids need not reach them: a path below a directory they
// cannot search (mode 0700) is as good as any.
type Root struct {
	// ReadOnly are bound read-only, each without its submounts: files, devices and
	// directories the program reads.
	ReadOnly []string
	// Recursive are bound read-only with their submounts (/proc).
	Recursive []string
	// Writable are bound writable with their submounts, as slaves of the host's mounts
	// there: mounts the host adds below them later reach the program. (Every clone is a
	// slave of the host's mount it copies, read-only ones too.)
	Writable []string
	// Links are host symlinks recreated as the same symlinks (/lib -> usr/lib).
	Links []string
}

// hooked records that this binary's main called Main: only then does re-executing it
// with Argv0 reach the entry.
var hooked atomic.Bool

// Command returns the command that runs s.Path confined by s: this executable as the
// jail entry. The caller sets its ExtraFiles (exactly s.ExtraFiles of them), output,
// environment and SysProcAttr, and starts it. It fails when this binary does not call
// Main, which would otherwise run the binary itself with the entry's arguments.
func Command(s Spec) (*exec.Cmd, error) {
	if !hooked.Load() {
		return nil, fmt.Errorf("jail: this binary does not run the jail entry (its main must call jail.Main first): %w", errdefs.ErrFailedPrecondition)
	}
	argv, err := s.argv()
	if err != nil {
		return nil, err
	}
	return &exec.Cmd{Path: selfExe, Args: argv}, nil
}

// PassRoot clones the paths of s.Root from this process's mount namespace as detached
// mounts (root_linux.go) and appends them to cmd.ExtraFiles, which must hold exactly the
// program's s.ExtraFiles descriptors: the entry takes them from there, moves them into
// its new root and closes them before the program runs. The caller calls done once cmd
// has started (the entry holds its own copies) or will not be started: it closes this
// process's copies, and a clone no process holds any more is gone with every mount in
// it. Without s.Root it does nothing. On error nothing is left open and cmd is unchanged.
func PassRoot(cmd *exec.Cmd, s Spec) (done func(), err error) {
	if s.Root == nil {
		return func() {}, nil
	}
	if len(cmd.ExtraFiles) != s.ExtraFiles {
		return nil, fmt.Errorf("jail: the command passes %d descriptors, the spec %d: set the program's before the root's: %w",
			len(cmd.ExtraFiles), s.ExtraFiles, errdefs.ErrInvalidArgument)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	clones, err := cloneRoot(s.Root)
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, clones...)
	return func() {
		for _, f := range clones {
			_ = f.Close()
		}
	}, nil
}

// Main runs the jail entry when argv[0] is Argv0 and then does not return; otherwise it
// returns at once. Call it first in main.
func Main() {
	hooked.Store(true)
	if len(os.Args) == 0 || os.Args[0] != Argv0 {
		return
	}
	err := enter(os.Args[1:]) // returns only on failure
	fmt.Fprintf(os.Stderr, "%s: %v\n", Argv0, err)
	os.Exit(ExitFailed)
}

// Flags of the argument protocol.
const (
	flagCaps   = "-keep-caps="
	flagFDs    = "-fds="
	flagRlimit = "-rlimit="
	flagEnd    = "--"

	flagReadOnly  = "-ro="
	flagRecursive = "-rro="
	flagWritable  = "-rw="
	flagLink      = "-link="
)

// argv is the entry's command line for s, argv[0] included.
func (s Spec) argv() ([]string, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	argv := []string{Argv0}
	if len(s.KeepCaps) > 0 {
		names := make([]string, len(s.KeepCaps))
		for i, c := range s.KeepCaps {
			names[i] = c.String()
		}
		argv = append(argv, flagCaps+strings.Join(names, ","))
	}
	if s.ExtraFiles > 0 {
		argv = append(argv, flagFDs+strconv.Itoa(s.ExtraFiles))
	}
	for _, r := range s.Rlimits {
		argv = append(argv, flagRlimit+r.Resource.String()+"="+strconv.FormatUint(r.Value, 10))
	}
	if r := s.Root; r != nil {
		for _, l := range []struct {
			flag  string
			paths []string
		}{{flagReadOnly, r.ReadOnly}, {flagRecursive, r.Recursive}, {flagWritable, r.Writable}, {flagLink, r.Links}} {
			for _, p := range l.paths {
				argv = append(argv, l.flag+p)
			}
		}
	}
	argv = append(argv, flagEnd, s.Path)
	return append(argv, s.Args...), nil
}

// validate checks what argv encodes and parse decodes.
func (s Spec) validate() error {
	if !strings.HasPrefix(s.Path, "/") {
		return fmt.Errorf("jail: program %q is not an absolute path: %w", s.Path, errdefs.ErrInvalidArgument)
	}
	if s.ExtraFiles < 0 {
		return fmt.Errorf("jail: %d extra files, want 0 or more: %w", s.ExtraFiles, errdefs.ErrInvalidArgument)
	}
	for _, c := range s.KeepCaps {
		if _, ok := capNames[c]; !ok {
			return fmt.Errorf("jail: unknown capability %d: %w", int(c), errdefs.ErrInvalidArgument)
		}
	}
	for _, r := range s.Rlimits {
		if !resourceNames[r.Resource] {
			return fmt.Errorf("jail: unknown resource limit %q: %w", string(r.Resource), errdefs.ErrInvalidArgument)
		}
	}
	if r := s.Root; r != nil {
		if len(r.ReadOnly)+len(r.Recursive)+len(r.Writable) == 0 {
			return fmt.Errorf("jail: the root holds no path: %w", errdefs.ErrInvalidArgument)
		}
		for _, p := range slices.Concat(r.ReadOnly, r.Recursive, r.Writable, r.Links) {
			if !strings.HasPrefix(p, "/") || filepath.Clean(p) != p || p == "/" || strings.ContainsRune(p, 0) {
				return fmt.Errorf("jail: root path %q is not a clean absolute path below /: %w", p, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

// parse reads the entry's arguments (argv without argv[0]).
func parse(args []string) (Spec, error) {
	var s Spec
	seen := map[string]bool{}
	for i, a := range args {
		if a == flagEnd {
			if i+1 >= len(args) {
				return Spec{}, errors.New("no program after --")
			}
			s.Path, s.Args = args[i+1], slices.Clone(args[i+2:])
			return s, s.validate()
		}
		name, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(a, "-") {
			return Spec{}, fmt.Errorf("argument %q: want -keep-caps=, -fds=, -rlimit= or --", a)
		}
		if name != "-rlimit" && !rootList[name+"="] && seen[name] {
			return Spec{}, fmt.Errorf("argument %q: %s given twice", a, name)
		}
		seen[name] = true
		switch name + "=" {
		case flagCaps:
			for _, n := range strings.Split(value, ",") {
				c, err := ParseCap(n)
				if err != nil {
					return Spec{}, fmt.Errorf("argument %q: %w", a, err)
				}
				s.KeepCaps = append(s.KeepCaps, c)
			}
		case flagFDs:
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 {
				return Spec{}, fmt.Errorf("argument %q: want a count of descriptors", a)
			}
			s.ExtraFiles = n
		case flagRlimit:
			rn, rv, ok := strings.Cut(value, "=")
			r, known := resourceByName[rn]
			v, err := strconv.ParseUint(rv, 10, 64)
			if !ok || !known || err != nil {
				return Spec{}, fmt.Errorf("argument %q: want -rlimit=<%s>=<number>", a, strings.Join(resourceList(), "|"))
			}
			s.Rlimits = append(s.Rlimits, Rlimit{Resource: r, Value: v})
		case flagReadOnly:
			root(&s).ReadOnly = append(root(&s).ReadOnly, value)
		case flagRecursive:
			root(&s).Recursive = append(root(&s).Recursive, value)
		case flagWritable:
			root(&s).Writable = append(root(&s).Writable, value)
		case flagLink:
			root(&s).Links = append(root(&s).Links, value)
		default:
			return Spec{}, fmt.Errorf("argument %q: unknown flag %s", a, name)
		}
	}
	return Spec{}, errors.New("no -- before the program")
}

// rootList are the root flags that may be given more than once.
var rootList = map[string]bool{flagReadOnly: true, flagRecursive: true, flagWritable: true, flagLink: true}

// root is s.Root, created empty on first use.
func root(s *Spec) *Root {
	if s.Root == nil {
		s.Root = &Root{}
	}
	return s.Root
}
