package predict

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/opstest"
	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/nifti"
	"github.com/u2net-vk/u2net/u2net/preprocess"
	"github.com/u2net-vk/u2net/vk"
)

func TestFitWindow(t *testing.T) {
	// fitsUnder accepts a batch and window of at most limit voxels in all.
	fitsUnder := func(limit int, fail error) func(int, [3]int) error {
		return func(b int, s [3]int) error {
			if b*s[0]*s[1]*s[2] > limit {
				return fmt.Errorf("building: %w", fail)
			}
			return nil
		}
	}
	other := errors.New("a shader failed")
	cases := []struct {
		name      string
		reserve   func(int, [3]int) error
		size      [3]int
		batch     int
		multiple  [3]int
		want      [3]int
		wantBatch int
		wantErr   error
	}{
		{"fits", fitsUnder(1<<30, ops.ErrTooLarge), [3]int{64, 64, 64}, 4, [3]int{8, 8, 8}, [3]int{64, 64, 64}, 4, nil},
		{"halve the batch", fitsUnder(2*64*64*64, ops.ErrOutOfMemory), [3]int{64, 64, 64}, 5, [3]int{8, 8, 8}, [3]int{64, 64, 64}, 2, nil},
		// 128 → 112 → 96 on the longest axis in turn, the first on ties.
		{"shrink the window", fitsUnder(100*100*100, ops.ErrTooLarge), [3]int{128, 128, 128}, 2, [3]int{16, 16, 16}, [3]int{96, 96, 96}, 1, nil},
		{"anisotropic multiples", fitsUnder(20*64*64, ops.ErrOutOfMemory), [3]int{20, 96, 96}, 1, [3]int{4, 32, 32}, [3]int{20, 64, 64}, 1, nil},
		{"a whole volume", fitsUnder(128*128*128, ops.ErrOutOfMemory), [3]int{320, 512, 512}, 1, [3]int{32, 32, 32}, [3]int{128, 128, 128}, 1, nil},
		// The deepest level keeps two voxels: 4×4×4 is the last try.
		{"nothing fits", fitsUnder(7, ops.ErrOutOfMemory), [3]int{8, 8, 4}, 2, [3]int{2, 4, 4}, [3]int{4, 4, 4}, 1, ops.ErrOutOfMemory},
		{"another error", func(int, [3]int) error { return other }, [3]int{64, 64, 64}, 2, [3]int{8, 8, 8}, [3]int{64, 64, 64}, 2, other},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, b, err := fitWindow(c.reserve, c.size, c.batch, c.multiple)
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, c.wantErr)
			}
			if got != c.want || b != c.wantBatch {
				t.Errorf("window %v batch %d, want %v batch %d", got, b, c.want, c.wantBatch)
			}
			if c.wantErr == ops.ErrOutOfMemory && !strings.Contains(err.Error(), fmt.Sprint(c.size)) {
				t.Errorf("error %q does not name the window asked for, %v", err, c.size)
			}
		})
	}
}

// A whole volume that the engine cannot hold is predicted with the largest
// smaller window that fits, with a warning naming it, and gives what that
// window gives on an engine without a limit: on a Vulkan device and on the
// reference engine.
func TestVolumeFitsMemoryLimit(t *testing.T) {
	cfg := u2net.DefaultConfig()
	cfg.BaseChannels = 4
	cfg.PoolsPerAxis = [3]int{1, 2, 2}
	cfg.Domains = []u2net.Domain{{Name: "a", InChannels: 1, Classes: 2}}
	m, err := u2net.New(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	shape := [4]int{1, 10, 44, 40}
	vol := randomVolume(rand.New(rand.NewPCG(5, 5)), shape)

	// Each engine twice: without a limit, and with 60% of what the whole
	// volume needs there.
	engines := []struct {
		name    string
		free    func() ops.Engine
		limited func(limit uint64) ops.Engine
		need    func(e ops.Engine, net *u2net.Net) uint64 // after a prediction without a limit
	}{
		{"gpu",
			func() ops.Engine { return opstest.GPU(t, vk.Options{}) },
			func(limit uint64) ops.Engine { return opstest.GPU(t, vk.Options{MemoryLimit: limit}) },
			func(e ops.Engine, _ *u2net.Net) uint64 { _, peak := e.(*ops.GPU).Device().MemoryInUse(); return peak }},
		{"cpu",
			func() ops.Engine { return ops.NewCPU() },
			func(limit uint64) ops.Engine { c := ops.NewCPU(); c.MemoryLimit = int64(limit); return c },
			func(_ ops.Engine, net *u2net.Net) uint64 {
				plan, _ := net.PlanBytes(0, 1, [3]int{10, 44, 40}, false)
				return uint64(4*m.Counts().Total) + uint64(plan)
			}},
	}
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) { fitsUnderLimit(t, m, vol, eng.free(), eng.limited, eng.need) })
	}
}

func fitsUnderLimit(t *testing.T, m *u2net.Model, vol *nifti.Volume, free ops.Engine, limited func(uint64) ops.Engine,
	need func(ops.Engine, *u2net.Net) uint64) {
	ctx := context.Background()
	ref, err := u2net.NewNet(m, free)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if g, ok := free.(*ops.GPU); ok {
		g.Device().ResetPeakMemory()
	}
	if _, err := Volume(ctx, ref, 0, vol, Options{}); err != nil {
		t.Fatal(err)
	}
	peak := need(free, ref)
	limit := peak * 6 / 10
	net, err := u2net.NewNet(m, limited(limit))
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	var log bytes.Buffer
	got, err := Volume(ctx, net, 0, vol, Options{Log: slog.New(slog.NewJSONHandler(&log, nil))})
	if err != nil {
		t.Fatalf("under a limit of %d bytes (%d without): %v", limit, peak, err)
	}
	var rec struct {
		Msg           string
		FittedWindow  string `json:"fitted_window"`
		FittedBatch   int    `json:"fitted_batch"`
		Window, Level string
	}
	if err := json.Unmarshal(log.Bytes(), &rec); err != nil || rec.Level != "WARN" {
		t.Fatalf("log %q: want one warning (%v)", log.String(), err)
	}
	var fitted [3]int
	if _, err := fmt.Sscanf(rec.FittedWindow, "[%d %d %d]", &fitted[0], &fitted[1], &fitted[2]); err != nil {
		t.Fatalf("log %q: fitted window: %v", log.String(), err)
	}
	if rec.Window != "[10 44 40]" || fitted == [3]int{10, 44, 40} {
		t.Errorf("log %q: want the whole volume [10 44 40] reduced", log.String())
	}
	if got.Window != fitted || got.Windows < 2 {
		t.Errorf("output says %d windows of %v, want several of %v", got.Windows, got.Window, fitted)
	}
	want, err := Volume(ctx, ref, 0, vol, Options{Patch: fitted, Batch: rec.FittedBatch})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Probs, want.Probs) {
		t.Errorf("probabilities differ from those of window %v without a limit", fitted)
	}
}

// The default window is the patch the model was trained with where its
// plan records one, else the plan's median shape up to 128; either is
// rounded down to the total stride and kept at least one stride.
func TestDefaultPatch(t *testing.T) {
	cfg := u2net.DefaultConfig()
	cfg.PoolsPerAxis = [3]int{2, 3, 3} // strides 4, 8, 8
	for _, c := range []struct {
		median, patch, want [3]int
	}{
		{[3]int{40, 200, 90}, [3]int{}, [3]int{40, 128, 88}},
		{[3]int{40, 200, 90}, [3]int{16, 32, 48}, [3]int{16, 32, 48}},
		{[3]int{40, 200, 90}, [3]int{18, 36, 4}, [3]int{16, 32, 8}},
		{[3]int{2, 3, 5}, [3]int{}, [3]int{4, 8, 8}},
	} {
		p := &preprocess.Plan{MedianShape: c.median, Patch: c.patch}
		if got := DefaultPatch(cfg, p); got != c.want {
			t.Errorf("median %v, patch %v: window %v, want %v", c.median, c.patch, got, c.want)
		}
	}
}
