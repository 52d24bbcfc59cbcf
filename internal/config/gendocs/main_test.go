package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
)

const docPath = "../../../docs/configuration.md"

// TestDocsUpToDate fails when docs/configuration.md differs from what the code generates.
func TestDocsUpToDate(t *testing.T) {
	var b bytes.Buffer
	render(&b)
	got, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("read %s: %v (run: go generate ./internal/config)", docPath, err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("%s is stale: run `go generate ./internal/config` and commit the result", docPath)
	}
}

// TestDocsListEverything checks that every key and every annotation name appears.
func TestDocsListEverything(t *testing.T) {
	var b bytes.Buffer
	render(&b)
	doc := b.String()
	for _, k := range config.Keys() {
		if !strings.Contains(doc, "| `"+k.Name+"` |") {
			t.Errorf("key %s missing from the reference", k.FullName())
		}
		if k.Annotation != "" && !strings.Contains(doc, "`"+k.Section+"."+k.Annotation+"`") {
			t.Errorf("annotation for %s missing from the reference", k.FullName())
		}
		if k.Doc == "" {
			t.Errorf("key %s has no description", k.FullName())
		}
		if !k.Supported() && !strings.Contains(doc, "| **no**: "+text(k.Unsupported)+" |") {
			t.Errorf("unsupported key %s is not marked with its reason", k.FullName())
		}
		if len(k.UnsupportedValues) > 0 && !strings.Contains(doc, "| "+text(k.SupportText())+" |") {
			t.Errorf("key %s does not say which values are supported", k.FullName())
		}
	}
}
