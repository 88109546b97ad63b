package bench

import (
	"bytes"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops/opstest"
	"github.com/u2net-vk/u2net/vk"
)

// TestRunFitsTheDevice benchmarks under a memory limit that the network at
// 64³ and 32³ and the scaling's 64³ exceed: the network is measured at the
// largest halved size that fits (16³), with a note, and the scaling size
// is reported as not fitting, where before the whole run failed.
func TestRunFitsTheDevice(t *testing.T) {
	g := opstest.GPU(t, vk.Options{MemoryLimit: 8 << 20})
	opt := Options{
		Levels:  []Shape{},
		Repeats: 1,
		Network: NetSetting{Domains: 1, Base: 2, Batch: 1, Size: 64, Pools: [3]int{4, 4, 4}},
		Scaling: []int{16, 64}, ScalingNet: NetSetting{Domains: 1, Base: 2, Batch: 1},
	}
	rep, err := Run(g, opt, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Network) != 2 {
		t.Fatalf("%d network results, want 2", len(rep.Network))
	}
	for _, n := range rep.Network {
		if !strings.Contains(n.Setting, "pools [3 3 3], 16³") || n.Note != "64³ does not fit the device" || n.StepMS <= 0 {
			t.Errorf("%s: setting %q, note %q, step %.1f ms; want 16³ with 3 poolings, a note on 64³, a time", n.Mode, n.Setting, n.Note, n.StepMS)
		}
	}
	if len(rep.Scaling) != 2 || rep.Scaling[0].ForwardMS <= 0 || rep.Scaling[0].Skipped != "" || rep.Scaling[1].Skipped == "" {
		t.Errorf("scaling %+v: want 16³ measured and 64³ skipped", rep.Scaling)
	}
	var out bytes.Buffer
	WriteText(&out, []*Report{rep})
	for _, want := range []string{"universal: 64³ does not fit the device", "64³  does not fit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, out.String())
		}
	}
}
