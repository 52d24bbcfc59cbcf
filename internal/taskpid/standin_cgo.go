//go:build cgo

package taskpid

/*
#include <errno.h>
#include <string.h>
#include <unistd.h>

// vessel_task_standin makes the process a stand-in before the Go runtime starts, when
// argv[0] is "vessel-task" (taskpid.Argv0): it reads its stdin until end of file or an
// error and exits 0. glibc passes a constructor main's arguments. Signal dispositions are
// the defaults the exec left: any fatal signal ends it.
__attribute__((constructor)) static void vessel_task_standin(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 1 || argv == NULL || argv[0] == NULL || strcmp(argv[0], "vessel-task") != 0) {
		return;
	}
	char buf[64];
	for (;;) {
		ssize_t n = read(0, buf, sizeof buf);
		if (n > 0 || (n < 0 && errno == EINTR)) {
			continue;
		}
		_exit(0);
	}
}
*/
import "C"

// canStart tells whether Start can make stand-ins: always, with the constructor, which
// runs before the Go runtime starts in any binary that links this package.
func canStart() error { return nil }
