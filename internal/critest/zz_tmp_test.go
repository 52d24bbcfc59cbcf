package critest

import (
	"os"
	"testing"
)

func TestZZReport(t *testing.T) {
	dir := os.Getenv("ZZDIR")
	runc, err := readJUnit(dir + "/runc/junit.xml")
	if err != nil {
		t.Fatal(err)
	}
	vessel, err := readJUnit(dir + "/vessel/junit.xml")
	if err != nil {
		t.Fatal(err)
	}
	c := Compare(os.Getenv("ZZVER"), runc, vessel, readExceptions(t))
	if err := writeMarkdown(dir+"/results.md", c, runc, vessel); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Problems() {
		t.Log("PROBLEM ", p)
	}
	for _, r := range c.Rows {
		if r.Status != Same {
			t.Log(r.Status, " ", r.Spec)
		}
	}
}
