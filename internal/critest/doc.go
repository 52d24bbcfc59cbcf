// Package critest runs the Kubernetes CRI validation suite (critest from
// sigs.k8s.io/cri-tools) against a containerd of its own whose CRI plugin has two runtime
// handlers, runc (the reference) and vessel, and judges Vessel's results against runc's
// with the exceptions list conformance/critest-exceptions.txt (Compare). The run is a
// test (TestCritest, gated on VESSEL_CRITEST=1): the images critest pulls are built here
// from Debian's busybox and served by a registry in the test process to which
// containerd's registry mirrors point, so nothing outside the machine is contacted.
// `make critest` runs it; docs/kubernetes.md holds its results.
package critest
