package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/u2net-vk/u2net/ops"
)

func TestByteSizeFlag(t *testing.T) {
	cases := []struct {
		in   string
		want byteSize
		bad  bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"512MiB", 512 << 20, false},
		{"8GiB", 8 << 30, false},
		{"8g", 8 << 30, false},
		{" 1.5 GiB ", 3 << 29, false},
		{"64k", 64 << 10, false},
		{"2TiB", 2 << 40, false},
		{"12B", 12, false},
		{"", 0, true},
		{"GiB", 0, true},
		{"-1GiB", 0, true},
		{"4XB", 0, true},
		{"1.2.3M", 0, true},
		{"99999999T", 0, true},
	}
	for _, c := range cases {
		var b byteSize
		err := b.Set(c.in)
		if (err != nil) != c.bad || (!c.bad && b != c.want) {
			t.Errorf("Set(%q) = %d, %v; want %d, error %v", c.in, b, err, c.want, c.bad)
		}
	}
}

func TestHostMemory(t *testing.T) {
	cases := []struct {
		name, meminfo string
		want          uint64
	}{
		{"linux", "MemTotal:       24683656 kB\nMemFree:         1000 kB\n", 24683656 << 10},
		{"not first", "MemFree:  1000 kB\nMemTotal: 2048 kB\n", 2 << 20},
		{"no total", "MemFree:  1000 kB\n", 0},
		{"bad number", "MemTotal: lots kB\n", 0},
		{"other unit", "MemTotal: 2048 MB\n", 0},
		{"empty", "", 0},
	}
	dir := t.TempDir()
	for _, c := range cases {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, []byte(c.meminfo), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := hostMemory(path); got != c.want {
			t.Errorf("%s: hostMemory = %d, want %d", c.name, got, c.want)
		}
	}
	if got := hostMemory(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("missing file: hostMemory = %d, want 0", got)
	}
}

// TestDefaultMemoryLimit opens the reference engine as the commands do:
// without --memory-limit it gets half the host's memory, with 0 no cap.
func TestDefaultMemoryLimit(t *testing.T) {
	host := hostMemory("/proc/meminfo")
	if host == 0 {
		t.Skip("no /proc/meminfo on this host")
	}
	log := slog.New(slog.DiscardHandler)
	var given memoryLimitFlag
	if err := given.Set("3MiB"); err != nil {
		t.Fatal(err)
	}
	var none memoryLimitFlag
	if err := none.Set("0"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		limit memoryLimitFlag
		want  int64
	}{{"unset", memoryLimitFlag{}, int64(host / hostMemoryShare)}, {"given", given, 3 << 20}, {"none", none, 0}} {
		e, err := openEngine("cpu", c.limit, log)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.(*ops.CPU).MemoryLimit; got != c.want {
			t.Errorf("%s: the reference engine's limit is %d, want %d", c.name, got, c.want)
		}
		e.Close()
	}
}
