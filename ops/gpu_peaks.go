package ops

import (
	"fmt"
	"slices"
	"time"

	"github.com/u2net-vk/u2net/vk"
)

// Peaks are a device's measured limits, the yardsticks of the benchmark
// report.
type Peaks struct {
	CopyGBps float64 `json:"copy_gb_per_s"` // bytes read plus bytes written per second, 1e9
	GFLOPs   float64 `json:"gflop_per_s"`   // fp32 FMA throughput, two FLOPs per FMA, 1e9
	// UploadGBps and DownloadGBps move a tensor from a host slice to the
	// device and back as the network's recorded passes do (through
	// staging memory, slot by slot), by the wall clock: bytes per second,
	// 1e9. They are what a pass's wall time adds to its GPU time.
	UploadGBps   float64 `json:"upload_gb_per_s"`
	DownloadGBps float64 `json:"download_gb_per_s"`
}

// benchFLOPsPerIter is the FLOPs of one loop iteration of bench.comp's
// FMA kernel: four vec4 FMAs of two FLOPs per lane.
const benchFLOPsPerIter = 4 * 4 * 2

// Modes of shaders/bench.comp.
const (
	benchCopy uint32 = iota
	benchFMA
)

// copyKernel is bench.comp's copy with wg invocations per workgroup and per
// vec4s per invocation.
func (g *GPU) copyKernel(wg, per int) (*vk.Kernel, error) {
	return g.kernel("bench", []vk.Access{vk.Read, vk.Write}, 8, uint32(wg), benchCopy, 1, uint32(per))
}

type pushBench struct {
	N uint32
	A float32
}

// copyPers are the vec4s per invocation of the copies MeasurePeaks times:
// the device's copy bandwidth is the faster one's.
var copyPers = []int{1, 4}

// MeasurePeaks times a vec4 copy of bytes bytes, with each of copyPers, and
// an FMA-bound kernel with GPU timestamps, each after a warm-up (WarmUp),
// and returns the median of repeats (of the faster copy); and the upload
// and the download of up to 64 MiB of them (measureTransfers).
func (g *GPU) MeasurePeaks(bytes int, repeats int) (Peaks, error) {
	const wg, iter = 256, 1024
	n := bytes / 16
	if n < wg {
		return Peaks{}, fmt.Errorf("ops.MeasurePeaks: %d bytes is too small", bytes)
	}
	fmaK, err := g.kernel("bench", []vk.Access{vk.Read, vk.Write}, 8, wg, benchFMA, iter, 1)
	if err != nil {
		return Peaks{}, err
	}
	x, err := g.dev.Alloc(uint64(16 * n))
	if err != nil {
		return Peaks{}, err
	}
	defer x.Release()
	y, err := g.dev.Alloc(uint64(16 * n))
	if err != nil {
		return Peaks{}, err
	}
	defer y.Release()
	// The FMA kernel needs enough invocations to fill the device, not bytes:
	// a CPU device is full with far fewer (lavapipe, 2 cores: the 23
	// dispatches of 2^20 took 30 s, of 2^14 under a second, at the same
	// GFLOP/s).
	nf := min(n, tuned(g, 1<<20, 1<<14))
	// Each kernel warms the device up (WarmUp) before its timed dispatches.
	time1 := func(k *vk.Kernel, count, per int) (time.Duration, error) {
		call := func(int) error {
			return g.dispatch("MeasurePeaks", k, vk.Grid1D(ceilDiv(count, per), wg), pushBench{uint32(count), 0.999}, x, y)
		}
		calls, _, err := g.TimeCalls(g.WarmTime(), repeats, call)
		if err != nil {
			return 0, err
		}
		return medianCallTime(calls), nil
	}
	// Fill the source once so the copy never reads uninitialised memory.
	b := g.dev.NewBatch()
	b.Fill(x, 0x3f800000)
	err = b.Run()
	b.Release()
	if err != nil {
		return Peaks{}, err
	}
	var tc time.Duration
	for _, per := range copyPers {
		k, err := g.copyKernel(wg, per)
		if err != nil {
			return Peaks{}, err
		}
		t, err := time1(k, n, per)
		if err != nil {
			return Peaks{}, err
		}
		if tc == 0 || t < tc {
			tc = t
		}
	}
	tf, err := time1(fmaK, nf, 1)
	if err != nil {
		return Peaks{}, err
	}
	// The transfers move at most a staging block (64 MiB), about a pass's
	// input or logits at the reference setting: more would only cost host
	// memory.
	nt := min(4*n, transferFloats)
	up, down, err := g.measureTransfers(nt, repeats)
	if err != nil {
		return Peaks{}, err
	}
	return Peaks{
		CopyGBps:     float64(32*n) / tc.Seconds() / 1e9,
		GFLOPs:       float64(nf) * iter * benchFLOPsPerIter / tf.Seconds() / 1e9,
		UploadGBps:   float64(4*nt) / up.Seconds() / 1e9,
		DownloadGBps: float64(4*nt) / down.Seconds() / 1e9,
	}, nil
}

// transferFloats is the floats of the largest transfer MeasurePeaks times.
const transferFloats = 16 << 20

// measureTransfers times a recorded upload of n floats from a host slice
// into a tensor and a recorded download back into another, each the median
// of repeats by the wall clock after a run that is not counted.
func (g *GPU) measureTransfers(n, repeats int) (up, down time.Duration, err error) {
	t, err := g.Alloc(n)
	if err != nil {
		return 0, 0, err
	}
	defer g.Free(t)
	src, dst := make([]float32, n), make([]float32, n)
	for i := range src {
		src[i] = float32(i%251) - 125
	}
	var in *InputSlot
	var out *OutputSlot
	upRec, err := g.Capture(func() (err error) { in, err = g.WriteSlot(t); return err })
	if err != nil {
		return 0, 0, err
	}
	defer upRec.Release()
	downRec, err := g.Capture(func() (err error) { out, err = g.ReadSlot(t); return err })
	if err != nil {
		return 0, 0, err
	}
	defer downRec.Release()
	if err := out.SetDest(dst); err != nil {
		return 0, 0, err
	}
	wall := func(run func() error) (time.Duration, error) {
		ts := make([]time.Duration, 0, repeats)
		for r := 0; r <= max(repeats, 1); r++ {
			start := time.Now()
			if err := run(); err != nil {
				return 0, err
			}
			if r > 0 {
				ts = append(ts, time.Since(start))
			}
		}
		slices.Sort(ts)
		return ts[len(ts)/2], nil
	}
	if up, err = wall(func() error {
		if err := in.Write(src); err != nil {
			return err
		}
		return upRec.Run()
	}); err != nil {
		return 0, 0, err
	}
	if down, err = wall(downRec.Run); err != nil {
		return 0, 0, err
	}
	if dst[n-1] != src[n-1] {
		return 0, 0, fmt.Errorf("ops.MeasurePeaks: the download read back %g, not the %g uploaded", dst[n-1], src[n-1])
	}
	return up, down, nil
}
