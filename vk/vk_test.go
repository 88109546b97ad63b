package vk

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/shaders"
)

// openTestDevice opens the default device. Without one the test fails when
// U2NET_REQUIRE_GPU is set (as in CI) and is skipped otherwise.
func openTestDevice(t *testing.T) *Device {
	t.Helper()
	return openTestDeviceWith(t, Options{})
}

// openTestDeviceWith is openTestDevice with options; the selector is
// $U2NET_DEVICE's.
func openTestDeviceWith(t *testing.T, opts Options) *Device {
	t.Helper()
	t.Setenv("U2NET_CACHE_DIR", t.TempDir())
	opts.Selector = os.Getenv("U2NET_DEVICE")
	d, err := Open(opts)
	if err != nil {
		if RequireGPU() {
			t.Fatalf("no Vulkan device (U2NET_REQUIRE_GPU is set): %v", err)
		}
		t.Skipf("no Vulkan device: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("closing device: %v", err)
		}
	})
	return d
}

func testKernel(t *testing.T, d *Device, name string, bindings []Access, push int, spec ...uint32) *Kernel {
	t.Helper()
	code, err := shaders.SPIRV(name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := d.Kernel(KernelSpec{Name: name, SPIRV: code, Bindings: bindings, PushSize: push, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func alloc(t *testing.T, d *Device, n uint64) *Buffer {
	t.Helper()
	b, err := d.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Release)
	return b
}

func randFloats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func nans(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

func TestRoundTripSizes(t *testing.T) {
	d := openTestDevice(t)
	r := rand.New(rand.NewPCG(1, 2))
	align := int(d.deviceMem.align)
	sizes := []int{1, 3, 4, 5, align - 1, align, align + 1, 4*align - 4, 4 * align, 4*align + 4, 65535, 65536, 65537, 1<<20 + 12}
	for _, n := range sizes {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		buf := alloc(t, d, uint64(n))
		if err := d.Upload(buf, src); err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		got := make([]byte, n)
		for i := range got {
			got[i] = 0xEE
		}
		if err := d.Download(got, buf); err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		for i := range src {
			if got[i] != src[i] {
				t.Fatalf("size %d: byte %d is %#x, want %#x", n, i, got[i], src[i])
			}
		}
	}
}

// A transfer larger than one staging block is split; both halves must land.
func TestRoundTripLargerThanStaging(t *testing.T) {
	d := openTestDevice(t)
	n := stagingBlockSize/4 + 1031
	src := randFloats(rand.New(rand.NewPCG(3, 4)), n)
	buf := alloc(t, d, uint64(4*n))
	if err := d.Upload(buf, src); err != nil {
		t.Fatal(err)
	}
	got := nans(n)
	if err := d.Download(got, buf); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if math.Float32bits(got[i]) != math.Float32bits(src[i]) {
			t.Fatalf("element %d: got %v, want %v", i, got[i], src[i])
		}
	}
}

type pushNV struct {
	N     uint32
	Value float32
}

func TestFillAndAxpy(t *testing.T) {
	d := openTestDevice(t)
	const wg = 64
	fill := testKernel(t, d, "fill", []Access{Write}, 8, wg)
	axpy := testKernel(t, d, "axpy", []Access{Read, ReadWrite}, 8, wg)
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 7, 63, 64, 65, 1000, 4099} {
		x := randFloats(r, n)
		bx, by := alloc(t, d, uint64(4*n)), alloc(t, d, uint64(4*n))
		b := d.NewBatch()
		b.Upload(by, nans(n)) // poison: an unwritten element stays NaN
		b.Upload(bx, x)
		b.Dispatch(fill, Grid1D(n, wg), pushNV{uint32(n), 1.5}, by)
		b.Dispatch(axpy, Grid1D(n, wg), pushNV{uint32(n), -2}, bx, by)
		got := nans(n)
		b.Download(got, by)
		if err := b.Run(); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		b.Release()
		for i := range got {
			want := float32(math.FMA(-2, float64(x[i]), 1.5))
			if got[i] != want {
				t.Fatalf("n=%d: y[%d] = %v, want %v", n, i, got[i], want)
			}
		}
	}
}

type pushSum struct {
	N   uint32
	Seg uint32
}

// sumOnDevice runs the two-pass deterministic sum.
func sumOnDevice(t *testing.T, d *Device, x []float32) float32 {
	t.Helper()
	const wg, seg = 128, 1024
	k := testKernel(t, d, "reduce_sum", []Access{Read, Write}, 8, wg)
	n := len(x)
	groups := (n + seg - 1) / seg
	bx, bp, bt := alloc(t, d, uint64(4*n)), alloc(t, d, uint64(4*groups)), alloc(t, d, 4)
	b := d.NewBatch()
	defer b.Release()
	b.Upload(bx, x)
	b.Upload(bp, nans(groups))
	b.Dispatch(k, Grid1D(groups, 1), pushSum{uint32(n), seg}, bx, bp)
	b.Dispatch(k, [3]uint32{1, 1, 1}, pushSum{uint32(groups), uint32(groups)}, bp, bt)
	got := nans(1)
	b.Download(got, bt)
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	return got[0]
}

func TestReduceSumDeterministic(t *testing.T) {
	d := openTestDevice(t)
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{1, 2, 127, 1024, 1025, 100003} {
		x := randFloats(r, n)
		var want, abs float64
		for _, v := range x {
			want += float64(v)
			abs += math.Abs(float64(v))
		}
		got := sumOnDevice(t, d, x)
		// fp32 summation error bound: a few ulps of the absolute sum per level.
		if tol := 1e-6 * abs; math.Abs(float64(got)-want) > tol {
			t.Errorf("n=%d: sum %v, want %v (tolerance %g)", n, got, want, tol)
		}
		for rep := 0; rep < 3; rep++ {
			if again := sumOnDevice(t, d, x); math.Float32bits(again) != math.Float32bits(got) {
				t.Fatalf("n=%d: run %d gave %v, first run %v: not deterministic", n, rep, again, got)
			}
		}
	}
}

// A thousand dependent dispatches in one batch give the same bits as the
// same dispatches submitted one batch each.
func TestLongDependentBatch(t *testing.T) {
	d := openTestDevice(t)
	const wg, n, steps = 64, 257, 1000
	axpy := testKernel(t, d, "axpy", []Access{Read, ReadWrite}, 8, wg)
	r := rand.New(rand.NewPCG(9, 10))
	x, y0 := randFloats(r, n), randFloats(r, n)
	a := func(i int) float32 { return float32(i%7-3) * 0.125 }
	bx, by := alloc(t, d, 4*n), alloc(t, d, 4*n)
	if err := d.Upload(bx, x); err != nil {
		t.Fatal(err)
	}

	// All in one batch: y += a_i x, and x += a_i y every tenth step, so both
	// read-after-write and write-after-read hazards occur.
	step := func(b *Batch, i int) {
		if i%10 == 9 {
			b.Dispatch(axpy, Grid1D(n, wg), pushNV{n, a(i)}, by, bx)
		} else {
			b.Dispatch(axpy, Grid1D(n, wg), pushNV{n, a(i)}, bx, by)
		}
	}
	b := d.NewBatch()
	b.Upload(by, y0)
	for i := 0; i < steps; i++ {
		step(b, i)
	}
	together := nans(n)
	b.Download(together, by)
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	b.Release()

	if err := d.Upload(bx, x); err != nil {
		t.Fatal(err)
	}
	if err := d.Upload(by, y0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < steps; i++ {
		b := d.NewBatch()
		step(b, i)
		if err := b.Run(); err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	alone := nans(n)
	if err := d.Download(alone, by); err != nil {
		t.Fatal(err)
	}
	for i := range alone {
		if math.Float32bits(alone[i]) != math.Float32bits(together[i]) {
			t.Fatalf("y[%d]: one batch %v, separate batches %v", i, together[i], alone[i])
		}
	}
}

// Batches record a barrier for each hazard and none between independent
// commands; with validation on, any missing barrier is reported by Run.
func TestBarriersOnlyWhereNeeded(t *testing.T) {
	d := openTestDevice(t)
	const wg, n = 64, 100
	fill := testKernel(t, d, "fill", []Access{Write}, 8, wg)
	axpy := testKernel(t, d, "axpy", []Access{Read, ReadWrite}, 8, wg)
	p, q, s := alloc(t, d, 4*n), alloc(t, d, 4*n), alloc(t, d, 4*n)
	g := Grid1D(n, wg)
	cases := []struct {
		name     string
		record   func(b *Batch)
		barriers int
	}{
		{"independent writes", func(b *Batch) {
			b.Dispatch(fill, g, pushNV{n, 1}, p)
			b.Dispatch(fill, g, pushNV{n, 2}, q)
			b.Dispatch(fill, g, pushNV{n, 3}, s)
		}, 0},
		{"read after write", func(b *Batch) {
			b.Dispatch(fill, g, pushNV{n, 1}, p)
			b.Dispatch(axpy, g, pushNV{n, 1}, p, q)
		}, 1},
		{"write after read", func(b *Batch) {
			b.Dispatch(axpy, g, pushNV{n, 1}, p, q)
			b.Dispatch(fill, g, pushNV{n, 5}, p)
		}, 1},
		{"write after write", func(b *Batch) {
			b.Dispatch(fill, g, pushNV{n, 1}, p)
			b.Dispatch(fill, g, pushNV{n, 2}, p)
		}, 1},
		{"two readers", func(b *Batch) {
			b.Dispatch(axpy, g, pushNV{n, 1}, p, q)
			b.Dispatch(axpy, g, pushNV{n, 1}, p, s)
		}, 0},
		{"copy chain", func(b *Batch) {
			b.Dispatch(fill, g, pushNV{n, 4}, p)
			b.Copy(q, p)
			b.Dispatch(axpy, g, pushNV{n, 1}, q, s)
			b.Fill(q, 0)
		}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := d.NewBatch()
			defer b.Release()
			c.record(b)
			if b.barriers != c.barriers {
				t.Errorf("%d barriers recorded, want %d", b.barriers, c.barriers)
			}
			if err := b.Run(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCopyChainValues(t *testing.T) {
	d := openTestDevice(t)
	const wg, n = 32, 77
	fill := testKernel(t, d, "fill", []Access{Write}, 8, wg)
	axpy := testKernel(t, d, "axpy", []Access{Read, ReadWrite}, 8, wg)
	p, q, s := alloc(t, d, 4*n), alloc(t, d, 4*n), alloc(t, d, 4*n)
	b := d.NewBatch()
	defer b.Release()
	b.Dispatch(fill, Grid1D(n, wg), pushNV{n, 4}, p)
	b.Copy(q, p)
	b.Fill(s, math.Float32bits(1))
	b.Dispatch(axpy, Grid1D(n, wg), pushNV{n, 0.5}, q, s) // s = 0.5*4 + 1
	b.Fill(q, 0)                                          // write after read of q
	b.Dispatch(axpy, Grid1D(n, wg), pushNV{n, 1}, q, s)   // s += 0
	got := nans(n)
	b.Download(got, s)
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != 3 {
			t.Fatalf("s[%d] = %v, want 3", i, v)
		}
	}
	// A recorded batch runs again with the same result.
	got[0] = -1
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	if got[0] != 3 {
		t.Fatalf("second run: s[0] = %v, want 3", got[0])
	}
}

func TestOversizeAllocation(t *testing.T) {
	d := openTestDevice(t)
	limit := uint64(d.Info().MaxStorageBufferRange)
	_, err := d.Alloc(limit + 1)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Alloc(%d) = %v, want ErrTooLarge", limit+1, err)
	}
	for _, want := range []string{strconv.FormatUint(limit+1, 10), strconv.FormatUint(limit, 10)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := d.Alloc(0); err == nil {
		t.Error("Alloc(0) succeeded")
	}
}

// Past Options.MemoryLimit allocations fail as on a full device, and
// memory given back makes room again, including the empty block the
// allocator keeps for reuse.
func TestMemoryLimit(t *testing.T) {
	const limit, piece = 96 * mib, 20 * mib
	d := openTestDeviceWith(t, Options{MemoryLimit: limit})
	var bufs []*Buffer
	var err error
	for len(bufs) < 10 {
		var b *Buffer
		if b, err = d.Alloc(piece); err != nil {
			break
		}
		bufs = append(bufs, b)
	}
	if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), strconv.Itoa(limit)) {
		t.Fatalf("allocation %d of %d bytes under a limit of %d: %v, want ErrOutOfMemory naming the limit", len(bufs)+1, piece, limit, err)
	}
	if n := len(bufs); n*piece > limit || n < 3 {
		t.Errorf("%d buffers of %d bytes fit under a limit of %d, want 3 to %d", n, piece, limit, limit/piece)
	}
	bufs[0].Release()
	b, err := d.Alloc(piece)
	if err != nil {
		t.Fatalf("allocating again after a release: %v", err)
	}
	bufs[0] = b
	for _, b := range bufs {
		b.Release()
	}
	if b, err = d.Alloc(limit - mib); err != nil {
		t.Fatalf("after releasing everything, one buffer of %d bytes under a limit of %d: %v", limit-mib, limit, err)
	}
	b.Release()
}

func TestAllocatorReuse(t *testing.T) {
	d := openTestDevice(t)
	before, _ := d.MemoryInUse()
	var bufs []*Buffer
	for i := 1; i <= 50; i++ {
		bufs = append(bufs, alloc(t, d, uint64(i*1000)))
	}
	for i := 0; i < len(bufs); i += 2 {
		bufs[i].Release()
	}
	for i := 1; i < len(bufs); i += 2 {
		bufs[i].Release()
	}
	after, peak := d.MemoryInUse()
	if after != before {
		t.Errorf("after releasing everything %d bytes in use, want %d", after, before)
	}
	if peak < 50*51/2*1000 {
		t.Errorf("peak %d below what was allocated", peak)
	}
	for _, blk := range d.deviceMem.blocks {
		if len(blk.free) != 1 || blk.free[0].size != blk.size {
			t.Errorf("block %d not coalesced: free list %v", blk.id, blk.free)
		}
	}
	// Buffers never overlap.
	a, b := alloc(t, d, 100), alloc(t, d, 100)
	if a.block == b.block && a.offset < b.offset+b.span && b.offset < a.offset+a.span {
		t.Errorf("buffers overlap: [%d,+%d) and [%d,+%d)", a.offset, a.span, b.offset, b.span)
	}
	if a.offset%d.Info().StorageAlignment != 0 || b.offset%d.Info().StorageAlignment != 0 {
		t.Errorf("offsets %d, %d not aligned to %d", a.offset, b.offset, d.Info().StorageAlignment)
	}
}

func TestRecordingErrors(t *testing.T) {
	d := openTestDevice(t)
	fill := testKernel(t, d, "fill", []Access{Write}, 8, 64)
	buf := alloc(t, d, 64)
	released, _ := d.Alloc(64)
	released.Release()
	cases := []struct {
		name   string
		record func(b *Batch)
		want   string
	}{
		{"buffer count", func(b *Batch) { b.Dispatch(fill, [3]uint32{1, 1, 1}, pushNV{1, 0}) }, "takes 1 buffers, got 0"},
		{"push size", func(b *Batch) { b.Dispatch(fill, [3]uint32{1, 1, 1}, uint32(1), buf) }, "8 bytes of push constants, got 4"},
		{"zero groups", func(b *Batch) { b.Dispatch(fill, [3]uint32{0, 1, 1}, pushNV{1, 0}, buf) }, "workgroup count"},
		{"too many groups", func(b *Batch) { b.Dispatch(fill, [3]uint32{1 << 31, 1, 1}, pushNV{1, 0}, buf) }, "workgroup count"},
		{"released", func(b *Batch) { b.Dispatch(fill, [3]uint32{1, 1, 1}, pushNV{1, 0}, released) }, "released"},
		{"upload too big", func(b *Batch) { b.Upload(buf, make([]float32, 17)) }, "68 bytes into a 64-byte"},
		{"host type", func(b *Batch) { b.Upload(buf, []float64{1}) }, "unsupported host type"},
		{"fill size", func(b *Batch) {
			odd := alloc(t, d, 6)
			b.Fill(odd, 0)
		}, "multiple of 4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := d.NewBatch()
			defer b.Release()
			c.record(b)
			err := b.Run()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run() = %v, want an error containing %q", err, c.want)
			}
		})
	}
	if _, err := d.Kernel(KernelSpec{Name: "bad", SPIRV: []byte("not spir-v at all....")}); err == nil {
		t.Error("a kernel from garbage bytes was built")
	}
}

func TestTimedBatch(t *testing.T) {
	d := openTestDevice(t)
	if !d.Info().Timestamps {
		t.Skip("device has no compute timestamps")
	}
	fill := testKernel(t, d, "fill", []Access{Write}, 8, 64)
	// Two buffers, so that consecutive dispatches are independent and may
	// overlap on the device.
	bufs := []*Buffer{alloc(t, d, 4*5000), alloc(t, d, 4*5000)}
	b := d.NewTimedBatch()
	defer b.Release()
	for i := 0; i < 5; i++ {
		b.SetLabel(fmt.Sprint("op", i%2))
		b.Dispatch(fill, Grid1D(5000, 64), pushNV{5000, float32(i)}, bufs[i%2])
	}
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	ts := b.Timings()
	if len(ts) != 5 {
		t.Fatalf("%d timings, want 5", len(ts))
	}
	for i, tm := range ts {
		if tm.Kernel != "fill" || tm.Label != fmt.Sprint("op", i%2) || tm.Duration < 0 {
			t.Errorf("timing %+v", tm)
		}
		// Each stamp pair starts after every earlier dispatch completed.
		if i > 0 && tm.Start < ts[i-1].Start+ts[i-1].Duration {
			t.Errorf("timing %d starts at %v, before timing %d ended at %v", i, tm.Start, i-1, ts[i-1].Start+ts[i-1].Duration)
		}
	}
	if ts[0].Start != 0 {
		t.Errorf("first timing starts at %v, want 0", ts[0].Start)
	}
}

func TestPipelineCacheIgnoresGarbage(t *testing.T) {
	dir := t.TempDir()
	devs, err := Devices()
	if err != nil || len(devs) == 0 {
		openTestDevice(t) // fails or skips with the reason
		return
	}
	c, err := Choose(os.Getenv("U2NET_DEVICE"))
	if err != nil || c.CPU {
		t.Skip("no Vulkan device chosen")
	}
	info := c.Device
	path := filepath.Join(dir, fmt.Sprintf("pipelines-%04x-%04x.bin", info.VendorID, info.DeviceID))
	garbage := [][]byte{
		[]byte("short"),
		append([]byte{32, 0, 0, 0, 1, 0, 0, 0}, make([]byte, 200)...), // foreign vendor and UUID
	}
	for i, g := range garbage {
		if err := os.WriteFile(path, g, 0o644); err != nil {
			t.Fatal(err)
		}
		// The folder comes from the environment, or from the options,
		// which take precedence.
		opts := Options{Selector: os.Getenv("U2NET_DEVICE")}
		t.Setenv("U2NET_CACHE_DIR", dir)
		if i == 1 {
			t.Setenv("U2NET_CACHE_DIR", t.TempDir())
			opts.PipelineCacheDir = dir
		}
		d, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := shaders.SPIRV("fill")
		if _, err := d.Kernel(KernelSpec{Name: "fill", SPIRV: code, Bindings: []Access{Write}, PushSize: 8, Spec: []uint32{64}}); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !cacheMatches(data, info) {
			t.Errorf("cache file after Close does not belong to the device (%d bytes)", len(data))
		}
	}
}

func TestChooseFrom(t *testing.T) {
	devs := []DeviceInfo{
		{Index: 0, Name: "llvmpipe (LLVM 15.0.6, 256 bits)", Type: TypeCPU},
		{Index: 1, Name: "NVIDIA H200", Type: TypeDiscrete},
		{Index: 2, Name: "Intel(R) UHD Graphics", Type: TypeIntegrated},
	}
	cases := []struct {
		sel     string
		want    int
		wantErr string
	}{
		{"", 1, ""},
		{"0", 0, ""},
		{"2", 2, ""},
		{"llvmpipe", 0, ""},
		{"h200", 1, ""},
		{"UHD", 2, ""},
		{"7", -1, "device 7 does not exist"},
		{"radeon", -1, `no device name contains "radeon"`},
	}
	for _, c := range cases {
		got, err := chooseFrom(devs, c.sel)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("chooseFrom(%q) = %v, %v; want error %q", c.sel, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got.Device.Index != c.want {
			t.Errorf("chooseFrom(%q) = %v, %v; want device %d", c.sel, got.Device.Index, err, c.want)
		}
	}
	if _, err := chooseFrom(nil, ""); !errors.Is(err, ErrNoDevice) {
		t.Errorf("chooseFrom(nil) = %v, want ErrNoDevice", err)
	}
	// Without a discrete GPU, integrated beats the CPU implementation.
	if c, _ := chooseFrom([]DeviceInfo{devs[0], devs[2]}, ""); c.Device.Index != 2 {
		t.Errorf("default among CPU and integrated chose %d", c.Device.Index)
	}
}

func TestChooseCPUAndReal(t *testing.T) {
	c, err := Choose("cpu")
	if err != nil || !c.CPU {
		t.Fatalf(`Choose("cpu") = %v, %v`, c, err)
	}
	if c, err := Choose("CPU"); err != nil || !c.CPU {
		t.Fatalf(`Choose("CPU") = %v, %v`, c, err)
	}
	devs, err := Devices()
	if err != nil || len(devs) == 0 {
		if RequireGPU() {
			t.Fatalf("no Vulkan device: %v", err)
		}
		t.Skip("no Vulkan device")
	}
	for _, dv := range devs {
		c, err := Choose(strconv.Itoa(dv.Index))
		if err != nil || c.Device.Name != dv.Name {
			t.Errorf("Choose(%d) = %v, %v", dv.Index, c, err)
		}
		word := strings.Fields(dv.Name)[0]
		if c, err := Choose(strings.ToUpper(word)); err != nil || !strings.Contains(strings.ToLower(c.Device.Name), strings.ToLower(word)) {
			t.Errorf("Choose(%q) = %v, %v", word, c, err)
		}
	}
}

func TestGrid1D(t *testing.T) {
	for _, c := range []struct {
		n, local int
		want     [3]uint32
	}{
		{0, 64, [3]uint32{1, 1, 1}},
		{1, 64, [3]uint32{1, 1, 1}},
		{65, 64, [3]uint32{2, 1, 1}},
		{65535 * 64, 64, [3]uint32{65535, 1, 1}},
		{65535*64 + 1, 64, [3]uint32{65535, 2, 1}},
	} {
		got := Grid1D(c.n, c.local)
		if got != c.want {
			t.Errorf("Grid1D(%d, %d) = %v, want %v", c.n, c.local, got, c.want)
		}
		if covered := int(got[0]) * int(got[1]) * c.local; covered < c.n {
			t.Errorf("Grid1D(%d, %d) covers only %d", c.n, c.local, covered)
		}
	}
}

// A grid wider than 65535 workgroups on x is flattened and still covers
// every element.
func TestFlattenedGrid(t *testing.T) {
	d := openTestDevice(t)
	const wg = 1
	n := 65535 + 300
	fill := testKernel(t, d, "fill", []Access{Write}, 8, wg)
	buf := alloc(t, d, uint64(4*n))
	b := d.NewBatch()
	defer b.Release()
	b.Upload(buf, nans(n))
	b.Dispatch(fill, Grid1D(n, wg), pushNV{uint32(n), 7}, buf)
	got := nans(n)
	b.Download(got, buf)
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != 7 {
			t.Fatalf("element %d = %v, want 7", i, v)
		}
	}
}

// With barriers switched off, synchronization validation must report the
// hazards, and Run must return them as an error: the proof that a missing
// barrier cannot pass the tests unnoticed.
func TestValidationReportsMissingBarrier(t *testing.T) {
	d := openTestDevice(t)
	if !d.Validating() {
		t.Skip("U2NET_VK_VALIDATE is not set")
	}
	const wg, n = 64, 4096
	fill := testKernel(t, d, "fill", []Access{Write}, 8, wg)
	axpy := testKernel(t, d, "axpy", []Access{Read, ReadWrite}, 8, wg)
	p, q := alloc(t, d, 4*n), alloc(t, d, 4*n)
	b := d.NewBatch()
	defer b.Release()
	b.noBarriers = true
	b.Dispatch(fill, Grid1D(n, wg), pushNV{n, 1}, p)
	b.Dispatch(axpy, Grid1D(n, wg), pushNV{n, 1}, p, q)
	err := b.Run()
	if err == nil || !strings.Contains(err.Error(), "SYNC-HAZARD") {
		t.Fatalf("Run without barriers = %v, want a SYNC-HAZARD validation error", err)
	}
}

// A batch run again uploads what its upload slots hold at that moment and
// downloads into the slices its read slots were last given, across staging
// parts.
func TestSlotsOfAReplayedBatch(t *testing.T) {
	d := openTestDevice(t)
	const n = (stagingBlockSize + 4096) / 4 // two staging parts
	buf := alloc(t, d, 4*n)
	b := d.NewBatch()
	defer b.Release()
	up := b.UploadSlot(buf, 4*n)
	down := b.DownloadSlot(buf, 4*n)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	var outs [][]float32
	for run := range 3 {
		in := make([]float32, n)
		for i := range in {
			in[i] = float32(run*7 + i%1000)
		}
		if err := up.Write(in); err != nil {
			t.Fatal(err)
		}
		out := make([]float32, n)
		if err := down.SetDest(out); err != nil {
			t.Fatal(err)
		}
		if err := b.Run(); err != nil {
			t.Fatal(err)
		}
		for i := range in {
			if out[i] != in[i] {
				t.Fatalf("run %d: out[%d] = %v, want %v", run, i, out[i], in[i])
			}
		}
		outs = append(outs, out)
	}
	if outs[0][0] != 0 || outs[1][0] != 7 {
		t.Errorf("an earlier destination was overwritten: %v, %v", outs[0][0], outs[1][0])
	}
	if err := down.SetDest(make([]float32, n-1)); err == nil {
		t.Error("SetDest accepted a slice of the wrong size")
	}
}

// pushLayout is layout.comp's push-constant block; its MODE 0 with block =
// stride = n copies n floats (n/4 vec4s with VEC4).
type pushLayout struct {
	Items                 uint32
	Block, Stride, Offset uint32
}

// Texel bindings read a buffer, or a view of one at an offset, as texels of
// one or four floats: layout.comp's texel variant copies it through them.
func TestTexelBindings(t *testing.T) {
	d := openTestDevice(t)
	r := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct {
		n    int
		four bool
		at   uint64 // the view's offset into its buffer; 0: the buffer itself
	}{{1, false, 0}, {37, false, 0}, {4, true, 0}, {1028, true, 0}, {33, false, 256}, {64, true, 512}} {
		access := ReadTexel
		items := c.n
		if c.four {
			access, items = ReadTexel4, c.n/4
		}
		k := testKernel(t, d, "layout.texel", []Access{access, Write}, 16, 64, b32(c.four), 0)
		alloc(t, d, 12) // the next buffer does not start at 0
		x := randFloats(r, c.n)
		whole := alloc(t, d, c.at+uint64(4*c.n))
		src := whole
		if c.at > 0 {
			var err error
			if src, err = whole.View(c.at, uint64(4*c.n)); err != nil {
				t.Fatal(err)
			}
		}
		dst := alloc(t, d, uint64(4*c.n))
		n := uint32(c.n)
		b := d.NewBatch()
		b.Upload(whole, append(nans(int(c.at/4)), x...))
		b.Upload(dst, nans(c.n))
		b.Dispatch(k, Grid1D(items, 64), pushLayout{Items: uint32(items), Block: n, Stride: n}, src, dst)
		got := nans(c.n)
		b.Download(got, dst)
		if err := b.Run(); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		b.Release()
		for i := range got {
			if got[i] != x[i] {
				t.Fatalf("%+v: y[%d] = %v, want %v", c, i, got[i], x[i])
			}
		}
	}
	// Releasing a buffer destroys the views made of it.
	held := alloc(t, d, 64)
	views := len(held.block.views)
	if _, err := held.texelView(true); err != nil {
		t.Fatal(err)
	}
	if _, err := held.texelView(false); err != nil {
		t.Fatal(err)
	}
	if got := len(held.block.views); got != views+2 {
		t.Errorf("%d views after two texel views of a new buffer, want %d", got, views+2)
	}
	held.Release()
	if got := len(held.block.views); got != views {
		t.Errorf("%d views after releasing the buffer, want %d", got, views)
	}

	// A binding of four-float texels needs one whole texel.
	k := testKernel(t, d, "layout.texel", []Access{ReadTexel4, Write}, 16, 64, 1, 0)
	small, dst := alloc(t, d, 8), alloc(t, d, 16)
	b := d.NewBatch()
	defer b.Release()
	b.Dispatch(k, [3]uint32{1, 1, 1}, pushLayout{Items: 1, Block: 4, Stride: 4}, small, dst)
	if err := b.Run(); err == nil || !strings.Contains(err.Error(), "binding 0: a 8-byte buffer holds no 16-byte texel") {
		t.Errorf("Run() = %v, want the texel size error", err)
	}
	if _, err := d.Kernel(KernelSpec{Name: "layout.texel", SPIRV: k.spec.SPIRV, Bindings: []Access{Write | texel, Write}, PushSize: 16}); err == nil ||
		!strings.Contains(err.Error(), "binding 0 has no valid access mode") {
		t.Errorf("a written texel binding: %v, want an access-mode error", err)
	}
}

func b32(v bool) uint32 {
	if v {
		return 1
	}
	return 0
}

// CacheDir: the folder given, else $U2NET_CACHE_DIR, else the user's cache
// folder; "-" keeps none.
func TestCacheDir(t *testing.T) {
	user, err := os.UserCacheDir()
	if err != nil {
		t.Skip("no user cache folder:", err)
	}
	for _, c := range []struct{ dir, env, want string }{
		{"/a", "/b", "/a"},
		{"", "/b", "/b"},
		{"", "", filepath.Join(user, "u2net")},
		{"-", "/b", ""},
		{"", "-", ""},
	} {
		t.Setenv("U2NET_CACHE_DIR", c.env)
		if got := CacheDir(c.dir); got != c.want {
			t.Errorf("CacheDir(%q) with U2NET_CACHE_DIR=%q: %q, want %q", c.dir, c.env, got, c.want)
		}
	}
}
