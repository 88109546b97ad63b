package main

import "testing"

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
