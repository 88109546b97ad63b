package train

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/u2net"
)

// A patch derived from the data that the engine cannot hold is shrunk
// until a training step fits, with a warning; a patch given is refused at
// once, naming the flag.
func TestFitPatch(t *testing.T) {
	cfg := u2net.DefaultConfig()
	cfg.BaseChannels, cfg.PoolsPerAxis = 2, [3]int{2, 2, 2}
	cfg.Domains = []u2net.Domain{{Name: "a", InChannels: 1, Classes: 2}}
	m, err := u2net.New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	plan := func(size [3]int) int64 {
		n, err := u2net.NewNet(m, ops.NewCPU())
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		b, err := n.PlanBytes(0, 1, size, true)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	big, small := [3]int{32, 32, 32}, [3]int{16, 16, 16}
	params := int64(4 * 4 * m.Counts().Total) // values, gradients, two optimiser states
	cpu := ops.NewCPU()
	cpu.MemoryLimit = params + (plan(big)+plan(small))/2
	net, err := u2net.NewNet(m, cpu)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	doms := []*domainData{{index: 0}}
	opt := Options{Patch: big, Batch: 1}

	if _, err := fitPatch(net, doms, opt, false, log); !errors.Is(err, ops.ErrOutOfMemory) || !strings.Contains(err.Error(), "--patch [32 32 32]") {
		t.Errorf("a given patch too large: %v, want an out-of-memory error naming --patch", err)
	}
	got, err := fitPatch(net, doms, opt, true, log)
	if err != nil {
		t.Fatal(err)
	}
	for a := range got {
		if got[a]%4 != 0 || got[a] < small[a] || got[a] > big[a] {
			t.Fatalf("fitted patch %v: want multiples of 4 between %v and %v", got, small, big)
		}
	}
	if got == big || !strings.Contains(logs.String(), "fitted_patch") {
		t.Fatalf("fitted patch %v, log %q: want a smaller patch and a warning", got, logs.String())
	}
	r := rand.New(rand.NewPCG(1, 1))
	vox := got[0] * got[1] * got[2]
	x, l := make([]float32, vox), make([]int32, vox)
	for i := range x {
		x[i], l[i] = float32(r.NormFloat64()), int32(r.IntN(2))
	}
	if _, err := net.TrainStep(0, 1, got, x, l); err != nil {
		t.Fatalf("a step at the fitted patch %v: %v", got, err)
	}
}
