package ref

import "math"

// RelL2 returns the relative L2 error ‖got − want‖ / ‖want‖, accumulated in
// float64, for comparing a kernel's output with the reference's. It returns
// +Inf when the lengths differ or got holds a NaN or an infinity anywhere, so
// unwritten elements poisoned with NaN fail any tolerance. When want is all
// zeros it returns ‖got‖ itself if that is zero and +Inf otherwise.
func RelL2(got, want []float32) float64 { return relL2(got, want) }

func relL2[T float](got, want []T) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var diff, norm float64
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) || math.IsInf(g, 0) {
			return math.Inf(1)
		}
		diff += (g - w) * (g - w)
		norm += w * w
	}
	if norm == 0 {
		if diff == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Sqrt(diff / norm)
}
