package main

import "testing"

func TestClassVolumes(t *testing.T) {
	labels := []uint8{0, 1, 1, 2, 1, 0, 2, 2, 2, 1}
	// 2 × 1.5 × 1 mm voxels: 3 µL each.
	for _, c := range []struct {
		names []string
		want  string
	}{
		{nil, "1 0.012 mL, 2 0.012 mL, 3 0 mL"},
		{[]string{"background", "liver", "spleen", "cyst"}, "liver 0.012 mL, spleen 0.012 mL, cyst 0 mL"},
	} {
		if got := classVolumes(labels, 4, [3]float64{2, 1.5, 1}, c.names); got != c.want {
			t.Errorf("classVolumes with names %v = %q, want %q", c.names, got, c.want)
		}
	}
}
