package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSynthCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "data")
	var stdout, stderr bytes.Buffer
	code := runMain([]string{"synth", "--out", out, "--seed", "3", "--cases", "2", "--test-cases", "1", "--size", "16"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, d := range []string{"SynthCT", "SynthMR", "SynthVessel"} {
		if !strings.Contains(stdout.String(), d+": 2 training and 1 test cases") {
			t.Errorf("output does not report %s:\n%s", d, stdout.String())
		}
		for _, f := range []string{"dataset.json", "imagesTr", "labelsTr", "imagesTs", "labelsTs"} {
			if _, err := os.Stat(filepath.Join(out, d, f)); err != nil {
				t.Error(err)
			}
		}
	}
	// The same command again refuses to write into the now non-empty folder.
	stdout.Reset()
	stderr.Reset()
	code = runMain([]string{"synth", "--out", out}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "not empty") {
		t.Fatalf("second run: exit %d, stderr %q", code, stderr.String())
	}
}

func TestSynthUsage(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"synth"}, 2, "--out is required"},
		{[]string{"synth", "--out", dir, "extra"}, 2, "unexpected arguments"},
		{[]string{"synth", "--out", dir, "--cases", "0"}, 2, "--cases 0"},
		{[]string{"synth", "--out", dir, "--test-cases", "-1"}, 2, "--test-cases -1"},
		{[]string{"synth", "--out", dir, "--size", "5"}, 2, "--size 5"},
		{[]string{"synth", "--bogus"}, 2, "bogus"},
		{[]string{"synth", "-h"}, 0, "usage: u2net synth"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := runMain(c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}
