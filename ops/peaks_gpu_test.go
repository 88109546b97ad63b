package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
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

// BenchmarkStreaming compares a streaming kernel of the network (LeakyReLU:
// read a tensor, write one) with the peak-copy micro-kernel at several
// sizes, so that a gap between the two shows whether it depends on the
// size (on an H200 the peak copy of 256 MiB buffers ran at 3.25 TB/s, and
// LeakyReLU of 64 MiB at about 1.4). Both report bytes read plus written
// per second; sizes the device cannot bind are skipped.
func BenchmarkStreaming(b *testing.B) {
	g := gpuEngine(b)
	limit := int(g.Device().Info().MaxStorageBufferRange)
	for _, mib := range []int{16, 64, 256, 1024} {
		bytes := mib << 20
		b.Run(fmt.Sprintf("copy-kernel/%dMiB", mib), func(b *testing.B) {
			if bytes > limit {
				b.Skipf("the device binds at most %d bytes", limit)
			}
			var p Peaks
			for i := 0; i < b.N; i++ {
				var err error
				if p, err = g.MeasurePeaks(bytes, 9); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(p.CopyGBps, "GB/s")
		})
		b.Run(fmt.Sprintf("leakyrelu/%dMiB", mib), func(b *testing.B) {
			if bytes > limit {
				b.Skipf("the device binds at most %d bytes", limit)
			}
			n := bytes / 4
			x := randn(rand.New(rand.NewPCG(51, 52)), n)
			ms := benchCase(b, g, opCase{tensors: []tensorSpec{input("x", x), output("y", n)},
				run: func(e Engine, t map[string]*Tensor) error { return e.LeakyReLU(ref.DefaultSlope, t["x"], t["y"]) }})
			b.ReportMetric(float64(2*bytes)/ms/1e6, "GB/s")
		})
	}
}
