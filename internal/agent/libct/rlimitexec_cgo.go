//go:build linux && cgo

package libct

/*
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

// vessel_rlimit_as_exec runs, before the Go runtime, in every process of the agent binary
// and acts only when the binary is executed as the address-space step of a container
// process (rlimitExecArgs): argv is { "/proc/self/exe", RLIMIT_EXEC_MARK, soft, hard,
// the process's own args... }. It sets RLIMIT_AS and executes the process's program, looked
// up in the PATH of the process's environment, so no code runs under the limit but the
// program's own. A failure (a program that is not found or cannot be executed included)
// is reported on stderr with exit status 255, a failing container init's and runc exec's.
__attribute__((constructor)) static void vessel_rlimit_as_exec(int argc, char **argv, char **envp) {
	if (argc < 5 || argv == NULL || strcmp(argv[1], "--vessel-rlimit-as-exec") != 0)
		return;
	char *end;
	struct rlimit l;
	errno = 0;
	l.rlim_cur = strtoull(argv[2], &end, 10);
	if (errno != 0 || *end != '\0')
		goto bad;
	l.rlim_max = strtoull(argv[3], &end, 10);
	if (errno != 0 || *end != '\0')
		goto bad;
	if (setrlimit(RLIMIT_AS, &l) != 0) {
		fprintf(stderr, "set RLIMIT_AS soft %s hard %s: %s\n", argv[2], argv[3], strerror(errno));
		_exit(255);
	}
	execvpe(argv[4], &argv[4], envp);
	fprintf(stderr, "exec failed: exec: \"%s\": %s\n", argv[4], strerror(errno));
	_exit(255);
bad:
	fprintf(stderr, "RLIMIT_AS soft %s hard %s: not a number\n", argv[2], argv[3]);
	_exit(255);
}
*/
import "C"

// rlimitExecBuilt: the binary carries vessel_rlimit_as_exec.
const rlimitExecBuilt = true
