// Package factoryv1 is the VM cache protocol: the protobuf messages and ttrpc service that
// `vessel factory init --cache N` serves and shims use to take over a booted VM.
// factory.proto is the source; the .pb.go files are generated (see the go:generate line)
// and committed.
package factoryv1

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-ttrpc_out=. --go-ttrpc_opt=paths=source_relative factory.proto
