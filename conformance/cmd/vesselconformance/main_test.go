package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteDoc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.md")
	intro := "# Conformance\n\nintro\n\n"
	rt := "## " + runtimeToolsTitle + " (v1)\n\nold rt table\n\n### prog\n\n- not ok: x\n"
	if err := os.WriteFile(path, []byte(intro+docMarker+"\n\n"+rt), 0o644); err != nil {
		t.Fatal(err)
	}
	bats := "## " + batsTitle + " (v1.1.5)\n\nbats table\n"
	if err := writeDoc(path, batsTitle+" (v1.1.5)", []byte(bats)); err != nil {
		t.Fatal(err)
	}
	if err := writeDoc(path, runtimeToolsTitle+" (v2)", []byte("## "+runtimeToolsTitle+" (v2)\n\nnew rt table\n")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{intro + docMarker, "new rt table", "bats table"} {
		if !strings.Contains(got, want) {
			t.Errorf("doc lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"old rt table", "- not ok: x"} {
		if strings.Contains(got, gone) {
			t.Errorf("doc still holds %q:\n%s", gone, got)
		}
	}
	if strings.Index(got, "new rt table") > strings.Index(got, "bats table") {
		t.Errorf("the replaced section moved:\n%s", got)
	}
}
