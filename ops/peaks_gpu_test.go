package ops

import (
	"math"
	"testing"
)

// MeasurePeaks returns finite positive peaks, and refuses a copy too small
// for one workgroup.
func TestMeasurePeaks(t *testing.T) {
	g := gpuEngine(t)
	p, err := g.MeasurePeaks(1<<14, 1)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"copy GB/s": p.CopyGBps, "GFLOP/s": p.GFLOPs} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v", name, v)
		}
	}
	if _, err := g.MeasurePeaks(100, 3); err == nil {
		t.Error("a 100-byte copy was measured")
	}
}
