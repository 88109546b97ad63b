// Package opstest opens GPU engines for the tests of packages built on ops.
package opstest

import (
	"os"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/vk"
)

// GPU opens a GPU engine on $U2NET_DEVICE (unless opts names a device) and
// closes it when the test ends. Without a device the test fails when
// U2NET_REQUIRE_GPU is set (as in CI) and is skipped otherwise.
func GPU(t testing.TB, opts vk.Options) *ops.GPU {
	t.Helper()
	if opts.Selector == "" {
		opts.Selector = os.Getenv("U2NET_DEVICE")
	}
	g, err := ops.OpenGPUWith(opts)
	if err != nil {
		if vk.RequireGPU() {
			t.Fatalf("no Vulkan device (U2NET_REQUIRE_GPU is set): %v", err)
		}
		t.Skipf("no Vulkan device: %v", err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("closing the GPU engine: %v", err)
		}
	})
	return g
}
