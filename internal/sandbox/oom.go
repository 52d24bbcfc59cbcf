package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// vmOOMScoreAdj is the VMM's oom_score_adj: under host memory pressure the kernel's OOM
// killer takes a VM before host daemons (0 or below) and before the shim that reports the
// VM's death (which keeps the score containerd gave it).
const vmOOMScoreAdj = 500

// raiseOOMScore raises process pid's oom_score_adj to at least score. A higher score is
// kept: lowering it needs CAP_SYS_RESOURCE, and a manager (kubelet's best-effort 1000) may
// have asked for more.
func raiseOOMScore(pid, score int) error {
	file := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	cur, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read oom_score_adj: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(cur)))
	if err != nil {
		return fmt.Errorf("%s: %q: %w", file, cur, err)
	}
	if n >= score {
		return nil
	}
	if err := os.WriteFile(file, []byte(strconv.Itoa(score)), 0); err != nil {
		return fmt.Errorf("raise oom_score_adj of pid %d to %d: %w", pid, score, err)
	}
	return nil
}
