package testutil

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// HTTPGet fetches url with a short timeout and returns the body of a 200 answer.
func HTTPGet(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

// IptablesMentioning returns the host's iptables rules (all tables) that name the address
// ip or the destination port port, one per line.
func IptablesMentioning(t *testing.T, ip, port string) string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var lines []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, ip+"/") || strings.Contains(line, ip+":") || strings.Contains(line, " "+ip+" ") || strings.Contains(line, "--dport "+port) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}
