package cli_test

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestRlimitAS gives a container runtime-tools' process_rlimits limits: a soft RLIMIT_AS of
// 1 GiB, below what the container init (the agent binary) holds before it executes the
// program. The container's init and an exec into it run with the limits, as the
// program itself (comm and command line), under the spec's user, capabilities, seccomp
// filter (runtime-tools' default allow list, which libcontainer's init cannot build
// under the limit) and no_new_privs; a program that is not found fails with exit status
// 255, named on stderr.
func TestRlimitAS(t *testing.T) {
	h := newHarness(t)
	h.subreaper()
	const gib = 1 << 30
	rl := func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{
			{Type: "RLIMIT_AS", Soft: gib, Hard: 2 * gib},
			{Type: "RLIMIT_NOFILE", Soft: 3000, Hard: 4000},
		}
		s.Process.User = specs.User{UID: 1000, GID: 1000}
		s.Process.NoNewPrivileges = true
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Syscalls:      []specs.LinuxSyscall{{Names: strings.Fields(seccompAllowed), Action: specs.ActAllow}},
		}
	}
	// status prints the fields of /proc/PID/status that show what libcontainer applied.
	const status = "grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/%s/status | tr -s '\\t' ' '"
	want := "Uid: 1000 1000 1000 1000\nCapEff: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2\n"

	b := h.bundle([]string{"sh", "-c", "echo $(ulimit -S -v) $(ulimit -H -v) $(ulimit -S -n); sleep 1000; echo done"}, rl)
	_, remove := h.created(b, "rl1")
	h.ok("start", "rl1")
	out := h.ok("exec", "rl1", "sh", "-c", "echo $(ulimit -S -v) $(ulimit -H -v); cat /proc/1/comm; tr '\\0' ' ' < /proc/1/cmdline; echo")
	if w := "1048576 2097152\nsh\nsh -c echo $(ulimit -S -v) $(ulimit -H -v) $(ulimit -S -n); sleep 1000; echo done \n"; out != w {
		t.Errorf("exec: limits, the init's comm and command line %q, want %q", out, w)
	}
	for _, pid := range []string{"1", "$$"} {
		if out := h.ok("exec", "rl1", "sh", "-c", "cat /proc/$$/comm; "+strings.ReplaceAll(status, "%s", pid)); out != "sh\n"+want {
			t.Errorf("exec: comm and /proc/%s/status %q, want %q", pid, out, "sh\n"+want)
		}
	}
	if _, stderr, code := h.run("exec", "rl1", "/no/such/exec"); code != 255 || !strings.Contains(stderr, "/no/such/exec") {
		t.Errorf("exec of a missing program: exit %d, stderr %q; want 255 naming it", code, tail(stderr, 20))
	}
	remove()

	b = h.bundle([]string{"sh", "-c", "echo $(ulimit -S -v) $(ulimit -H -v) $(ulimit -S -n); " + strings.ReplaceAll(status, "%s", "$$")}, rl)
	if stdout, stderr, code := h.run("run", "--bundle", b, "rl2"); code != 0 || stdout != "1048576 2097152 3000\n"+want {
		t.Errorf("run: exit %d, stdout %q, want %q; stderr %s", code, stdout, "1048576 2097152 3000\n"+want, tail(stderr, 20))
	}
	b = h.bundle([]string{"/no/such/program"}, rl)
	if _, stderr, code := h.run("run", "--bundle", b, "rl3"); code != 255 || !strings.Contains(stderr, "/no/such/program") {
		t.Errorf("run of a missing program: exit %d, stderr %q; want 255 naming it", code, tail(stderr, 20))
	}
	h.assertNoLeftovers()
}

// seccompAllowed are the system calls runtime-tools' default seccomp profile
// (generate/seccomp.DefaultProfile) allows on amd64 without CAP_SYS_ADMIN (there clone
// only without namespace flags), all others failing with EPERM.
const seccompAllowed = `arch_prctl clone
accept accept4 access alarm bind brk capget capset chdir chmod chown chown32 clock_getres
clock_gettime clock_nanosleep close connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_wait epoll_wait_old
eventfd eventfd2 execve execveat exit exit_group faccessat fadvise64 fadvise64_64
fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64
fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64
fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futimesat getcpu getcwd getdents
getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
memfd_create mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink mremap
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap nanosleep newfstatat
_newselect open openat pause pipe pipe2 poll ppoll prctl pread64 preadv prlimit64
pselect6 pwrite64 pwritev read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp
select semctl semget semop semtimedop send sendfile sendfile64 sendmmsg sendmsg sendto
setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer
setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32
setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack
signalfd signalfd4 sigreturn socket socketcall socketpair splice stat stat64 statfs
statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo syslog tee tgkill
time timer_create timer_delete timerfd_create timerfd_gettime timerfd_settime
timer_getoverrun timer_gettime timer_settime times tkill truncate truncate64 ugetrlimit
umask uname unlink unlinkat utime utimensat utimes vfork vmsplice wait4 waitid waitpid
write writev`
