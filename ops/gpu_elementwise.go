package ops

import (
	"fmt"
	"math"

	"github.com/u2net-vk/u2net/vk"
)

// Modes of shaders/elementwise.comp.
const (
	ewAxpy uint32 = iota
	ewAdd
	ewLeaky
	ewLeakyBackward
)

// elementwiseWG is the workgroup size of the one-element-per-invocation
// kernels.
const elementwiseWG = 256

// elementwisePer is the items (elements or vec4s) of elementwise.comp per
// invocation. On lavapipe (2 cores) four took LeakyReLU at 2×32×64³ 9.6-10.9
// ms forward and 12.5-12.7 backward against 13.5-16.4 and 14.5-17.0 with
// one (`go test -bench LeakyReLU ./ops`, three alternating runs); a GPU
// keeps one until `go test -bench StreamingWG ./ops` measures otherwise
// there.
func elementwisePer(g *GPU) int { return tuned(g, 1, 4) }

type pushNS struct {
	N uint32
	S float32
}

// elementwise records elementwise.comp in the given mode over n elements,
// four per invocation when n allows (tensors start 16-byte aligned).
func (g *GPU) elementwise(op string, mode uint32, n int, s float32, a, b, y *Tensor) error {
	vec4 := n%4 == 0
	items := n
	if vec4 {
		items = n / 4
	}
	per := elementwisePer(g)
	k, err := g.kernel("elementwise", []vk.Access{g.input(vec4), g.input(vec4), vk.ReadWrite}, 8, elementwiseWG, mode, b32(vec4), uint32(per))
	if err != nil {
		return fmt.Errorf("ops.%s: %w", op, err)
	}
	return g.dispatch(op, k, vk.Grid1D(ceilDiv(items, per), elementwiseWG), pushNS{uint32(items), s}, g.buf(a), g.buf(b), g.buf(y))
}

// checkSlope accepts the finite slopes ref accepts.
func checkSlope(op string, slope float64) error {
	if math.IsNaN(slope) || math.IsInf(slope, 0) {
		return fmt.Errorf("ops.%s: slope %g must be finite", op, slope)
	}
	return nil
}

// Axpy implements Engine.
func (g *GPU) Axpy(a float32, x, y *Tensor) error {
	if err := checkArgs(g, "Axpy", nil, in("x", x, -1), in("y", y, x.Len())); err != nil {
		return err
	}
	return g.elementwise("Axpy", ewAxpy, x.n, a, x, nil, y)
}

// Add implements Engine.
func (g *GPU) Add(a, b, y *Tensor) error {
	if err := checkArgs(g, "Add", nil, in("a", a, -1), in("b", b, a.Len()), in("y", y, a.Len())); err != nil {
		return err
	}
	return g.elementwise("Add", ewAdd, a.n, 0, a, b, y)
}

// LeakyReLU implements Engine; y may alias x.
func (g *GPU) LeakyReLU(slope float64, x, y *Tensor) error {
	if err := checkSlope("LeakyReLU", slope); err != nil {
		return err
	}
	if err := checkArgs(g, "LeakyReLU", nil, in("x", x, -1), in("y", y, x.Len())); err != nil {
		return err
	}
	return g.elementwise("LeakyReLU", ewLeaky, x.n, float32(slope), x, nil, y)
}

// LeakyReLUBackward implements Engine; dx may alias dy.
func (g *GPU) LeakyReLUBackward(slope float64, x, dy, dx *Tensor) error {
	if err := checkSlope("LeakyReLUBackward", slope); err != nil {
		return err
	}
	if err := checkArgs(g, "LeakyReLUBackward", nil, in("x", x, -1), in("dy", dy, x.Len()), in("dx", dx, x.Len())); err != nil {
		return err
	}
	return g.elementwise("LeakyReLUBackward", ewLeakyBackward, x.n, float32(slope), x, dy, dx)
}
