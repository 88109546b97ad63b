package ops

import (
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
)

func TestSetKernel(t *testing.T) {
	g := gpuEngine(t)
	p := ref.DepthwiseParams{N: 1, C: 2, Size: d3(4, 5, 6), Kernel: 3}
	np := ref.NormParams{N: 1, C: 2, Size: d3(4, 5, 6), Eps: ref.DefaultNormEps}
	big := ref.DepthwiseParams{N: 1, C: 2, Size: d3(64, 64, 64), Kernel: 3}
	defer func() {
		for _, c := range kernelChoices {
			if err := g.SetKernel(c.name + "=auto"); err != nil {
				t.Error(err)
			}
		}
		g.SetDeviceClass(ClassOfDevice)
	}()
	g.SetDeviceClass(ClassGPU)
	for _, c := range []struct {
		choice string
		check  func() bool // whether the engine now picks as asked
	}{
		{"depthwise-forward=stream", func() bool { return g.streamDepthwise(p, dwPlanes{}) }},
		{"depthwise-forward=tiles", func() bool { return !g.streamDepthwise(p, dwPlanes{}) }},
		{"depthwise-forward=stream:64x4x16", func() bool {
			t, err := g.streamTile("test", big)
			return g.streamDepthwise(p, dwPlanes{}) && err == nil && t == dwTile{64, 4, 16}
		}},
		{"depthwise-forward=auto", func() bool { return !g.streamDepthwise(p, dwPlanes{}) }},
		{"depthwise-backward=two-pass", func() bool { return !g.fusedBackward("test", p) }},
		{"depthwise-backward=fused", func() bool { return g.fusedBackward("test", p) }},
		{"depthwise-stats=separate", func() bool { return g.dwStatsOn != nil && !*g.dwStatsOn }},
		{"norm=fused", func() bool { plan := g.newNormPlan("test", np); return g.fusedNorm(&plan, 1) }},
		{"norm=chunked", func() bool { plan := g.newNormPlan("test", np); return !g.fusedNorm(&plan, 100) }},
		{"direct=on", func() bool { return g.directDepthwise(p) }},
		{"direct=off", func() bool { return !g.directDepthwise(p) }},
		{"depthwise-tile=64x4x8", func() bool { t, err := g.depthwiseTile("test", big); return err == nil && t == dwTile{64, 4, 8} }},
		{"depthwise-tile=16x16x8", func() bool {
			t, err := g.depthwiseTile("test", p) // fitted to 4×5×6: 8 wide, 8 high, 4 deep
			return err == nil && t == dwTile{8, 8, 4}
		}},
		{"depthwise-grad-tile=32x8x16", func() bool {
			t, _, _, err := g.weightGradTile("test", big, false)
			return err == nil && t == dwTile{32, 8, 16}
		}},
		{"depthwise-tile=auto", func() bool { t, err := g.depthwiseTile("test", big); return err == nil && t == dwTile{32, 8, 8} }},
		{"gemm-tile=wide", func() bool { t, err := g.pickTile(16, 4096); return err == nil && t.BN == 256 && t.BK == 16 }},
		{"gemm-tile=k8", func() bool { t, err := g.pickTile(16, 4096); return err == nil && t.BN == 128 && t.BK == 8 }},
		{"gemm-tile=k32", func() bool { t, err := g.pickTile(16, 4096); return err == nil && t.BN == 128 && t.BK == 32 }},
		{"device-class=cpu", func() bool { return g.cpuTuned() }},
		{"device-class=gpu", func() bool { return !g.cpuTuned() }},
	} {
		if err := g.SetKernel(c.choice); err != nil {
			t.Errorf("SetKernel(%q): %v", c.choice, err)
		} else if !c.check() {
			t.Errorf("SetKernel(%q): the engine does not pick as asked", c.choice)
		}
	}
	want := []string{"depthwise-backward=fused", "depthwise-grad-tile=32x8x16", "depthwise-stats=separate", "device-class=gpu",
		"direct=off", "gemm-tile=k32", "norm=chunked"}
	if got := g.Kernels(); !slices.Equal(got, want) {
		t.Errorf("Kernels() = %v, want %v", got, want)
	}
	for _, c := range []struct{ choice, want string }{
		{"depthwise-forward", "NAME=VALUE"},
		{"conv=fast", "NAME one of depthwise-forward"},
		{"norm=sometimes", "norm takes auto, fused, chunked"},
	} {
		if err := g.SetKernel(c.choice); err == nil || !strings.Contains(err.Error(), c.want) ||
			!strings.HasPrefix(err.Error(), "ops.SetKernel: ") {
			t.Errorf("SetKernel(%q): error %v, want one saying %q", c.choice, err, c.want)
		}
		if err := CheckKernel(c.choice); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckKernel(%q): error %v, want one saying %q", c.choice, err, c.want)
		}
	}
	if err := CheckKernel("direct=auto"); err != nil {
		t.Errorf("CheckKernel(direct=auto): %v", err)
	}
	if cs := KernelChoices(); len(cs) != len(kernelChoices) || !strings.HasPrefix(cs[0].String(), "depthwise-forward=auto|stream|tiles|stream:32x8x8|") {
		t.Errorf("KernelChoices() = %v", cs)
	}
}
