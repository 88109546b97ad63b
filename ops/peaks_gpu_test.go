package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// MeasurePeaks returns finite positive peaks, and refuses a copy too small
// for one workgroup.
func TestMeasurePeaks(t *testing.T) {
	g := gpuEngine(t)
	p, err := g.MeasurePeaks(1<<14, 1)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"copy GB/s": p.CopyGBps, "GFLOP/s": p.GFLOPs, "upload GB/s": p.UploadGBps, "download GB/s": p.DownloadGBps} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v", name, v)
		}
	}
	if _, err := g.MeasurePeaks(100, 3); err == nil {
		t.Error("a 100-byte copy was measured")
	}
}

// The copy that measures the bandwidth copies every vec4, with each number
// per invocation, into outputs poisoned with NaN, on lengths that leave the
// last workgroup partial.
func TestCopyKernel(t *testing.T) {
	g := gpuEngine(t)
	const wg = 64
	for _, per := range []int{1, 2, 4} {
		for _, n := range []int{1, wg - 1, 4*wg*per + 3} {
			t.Run(fmt.Sprintf("per%d/n=%d", per, n), func(t *testing.T) {
				want := randn(rand.New(rand.NewPCG(uint64(n), uint64(per))), 4*n)
				alloc := allocator(t, g)
				x, y := alloc(4*n), alloc(4*n)
				if err := g.Write(x, want); err != nil {
					t.Fatal(err)
				}
				if err := g.Fill(y, float32(math.NaN())); err != nil {
					t.Fatal(err)
				}
				k, err := g.copyKernel(wg, per)
				if err != nil {
					t.Fatal(err)
				}
				if err := g.dispatch("TestCopyKernel", k, vk.Grid1D(ceilDiv(n, per), wg), pushBench{uint32(n), 0.999}, x.gpu.buf, y.gpu.buf); err != nil {
					t.Fatal(err)
				}
				got := make([]float32, 4*n)
				if err := g.Read(y, got); err != nil {
					t.Fatal(err)
				}
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("element %d: got %g, want %g", i, got[i], want[i])
					}
				}
			})
		}
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

// BenchmarkStreamingWG times the peak-copy kernel and LeakyReLU's
// elementwise kernel over 64 MiB (a §8 activation) at several workgroup
// sizes and vec4s per invocation, each the median of 9 dispatches after a
// warm-up (TimeCalls), in bytes read plus written per second: whether
// either explains a gap between the two, or between the copy and the
// device's bandwidth. Run it with -benchtime 1x: each iteration is a whole
// measurement.
func BenchmarkStreamingWG(b *testing.B) {
	g := gpuEngine(b)
	const bytes = 64 << 20
	n := bytes / 16 // vec4s
	x, err := g.Alloc(bytes / 4)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Free(x)
	y, err := g.Alloc(bytes / 4)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Free(y)
	if err := g.Write(x, randn(rand.New(rand.NewPCG(53, 54)), bytes/4)); err != nil {
		b.Fatal(err)
	}
	info := g.Device().Info()
	for _, c := range []struct{ wg, per int }{{64, 1}, {128, 1}, {256, 1}, {512, 1}, {1024, 1}, {128, 2}, {256, 2}, {128, 4}, {256, 4}, {512, 4}} {
		wg, per := c.wg, c.per
		for _, k := range []struct {
			name, family string
			access       []vk.Access
			spec         []uint32
			push         any
			bufs         []*vk.Buffer
		}{
			{"copy", "bench", []vk.Access{vk.Read, vk.Write}, []uint32{uint32(wg), benchCopy, 1, uint32(per)},
				pushBench{uint32(n), 0.999}, []*vk.Buffer{x.gpu.buf, y.gpu.buf}},
			{"leakyrelu", "elementwise", []vk.Access{g.input(true), g.input(true), vk.ReadWrite}, []uint32{uint32(wg), ewLeaky, 1, uint32(per)},
				pushNS{uint32(n), float32(ref.DefaultSlope)}, []*vk.Buffer{x.gpu.buf, g.dummy, y.gpu.buf}},
		} {
			b.Run(fmt.Sprintf("%s/wg%d/per%d", k.name, wg, per), func(b *testing.B) {
				if uint32(wg) > info.MaxWorkgroupSize[0] || uint32(wg) > info.MaxWorkgroupInvocs {
					b.Skipf("device %s runs at most %d invocations per workgroup", info.Name, info.MaxWorkgroupInvocs)
				}
				kern, err := g.kernel(k.family, k.access, 8, k.spec...)
				if err != nil {
					b.Fatal(err)
				}
				call := func(int) error {
					return g.dispatch("StreamingWG", kern, vk.Grid1D(ceilDiv(n, per), wg), k.push, k.bufs...)
				}
				var med time.Duration
				for i := 0; i < b.N; i++ {
					calls, _, err := g.TimeCalls(g.WarmTime(), 9, call)
					if err != nil {
						b.Fatal(err)
					}
					med = medianCallTime(calls)
				}
				b.ReportMetric(float64(2*bytes)/med.Seconds()/1e9, "GB/s")
			})
		}
	}
}
