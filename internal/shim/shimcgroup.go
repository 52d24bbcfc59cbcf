package shim

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// createOptionsType is the type of the create options containerd 1.x's client sends to a
// runtime that is not runc's (containerd.linux.runc.CreateOptions, which containerd 2 no
// longer defines); createOptionsShimCgroup is the number of its shim_cgroup field.
const (
	createOptionsType       = "containerd.linux.runc.CreateOptions"
	createOptionsShimCgroup = 9
)

// readShimCgroup reads the task's create options that containerd writes to the start
// action's stdin (a protobuf Any; nothing when the task has none) and returns the cgroup
// they name for the shim, "" when none. A terminal on stdin (the start action run by
// hand) is not read.
func readShimCgroup(stdin *os.File) (string, error) {
	if _, err := unix.IoctlGetTermios(int(stdin.Fd()), unix.TCGETS); err == nil {
		return "", nil
	}
	data, err := io.ReadAll(stdin)
	if err != nil {
		return "", fmt.Errorf("read the task options on stdin: %w", err)
	}
	return shimCgroupOf(data)
}

// shimCgroupOf returns the ShimCgroup of encoded create options: runc's options
// (containerd.runc.v1.Options, what containerd's WithShimCgroup sets for runc and, in
// containerd 2, for every runtime) or containerd 1.x's CreateOptions (what its
// WithShimCgroup sets for other runtimes). Other option types name none.
func shimCgroupOf(data []byte) (string, error) {
	if len(data) == 0 {
		return "", nil
	}
	var a anypb.Any
	if err := proto.Unmarshal(data, &a); err != nil {
		return "", fmt.Errorf("task options: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if strings.TrimPrefix(a.GetTypeUrl(), "type.googleapis.com/") == createOptionsType {
		return protoStringField(a.GetValue(), createOptionsShimCgroup)
	}
	v, err := typeurl.UnmarshalAny(&a)
	if err != nil {
		return "", nil //nolint:nilerr // options of a type Vessel does not know name no shim cgroup
	}
	if o, ok := v.(*options.Options); ok {
		return o.ShimCgroup, nil
	}
	return "", nil
}

// protoStringField returns the last value of string field num in an encoded message.
func protoStringField(b []byte, num protowire.Number) (string, error) {
	var out string
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return "", fmt.Errorf("task options: %w: %w", errdefs.ErrInvalidArgument, protowire.ParseError(l))
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return "", fmt.Errorf("task options: %w: %w", errdefs.ErrInvalidArgument, protowire.ParseError(l))
			}
			out, b = string(v), b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return "", fmt.Errorf("task options: %w: %w", errdefs.ErrInvalidArgument, protowire.ParseError(l))
		}
		b = b[l:]
	}
	return out, nil
}
