package shim

import (
	"testing"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestShimCgroupOf(t *testing.T) {
	encode := func(t *testing.T, a *anypb.Any) []byte {
		b, err := proto.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	runcOpts := func(t *testing.T, o *options.Options) []byte {
		a, err := typeurl.MarshalAnyToProto(o)
		if err != nil {
			t.Fatal(err)
		}
		return encode(t, a)
	}
	// containerd 1.x's CreateOptions: no_pivot_root (1), shim_cgroup (9), io_uid (10).
	var create []byte
	create = protowire.AppendTag(create, 1, protowire.VarintType)
	create = protowire.AppendVarint(create, 1)
	create = protowire.AppendTag(create, 9, protowire.BytesType)
	create = protowire.AppendString(create, "/containerd/shim")
	create = protowire.AppendTag(create, 10, protowire.VarintType)
	create = protowire.AppendVarint(create, 1000)
	other, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: "/etc/vessel.toml"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		want    string
		wantErr bool
	}{
		{"no options", nil, "", false},
		{"runc options", runcOpts(t, &options.Options{ShimCgroup: "/a/b", IoUid: 3}), "/a/b", false},
		{"runc options without a cgroup", runcOpts(t, &options.Options{IoUid: 3}), "", false},
		{"containerd 1 create options", encode(t, &anypb.Any{TypeUrl: "containerd.linux.runc.CreateOptions", Value: create}), "/containerd/shim", false},
		{"runtime options", encode(t, other), "", false},
		{"not an Any", []byte{0xff, 0xff}, "", true},
		{"truncated create options", encode(t, &anypb.Any{TypeUrl: "containerd.linux.runc.CreateOptions", Value: create[:5]}), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := shimCgroupOf(tc.data)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
