package ref

import (
	"fmt"
	"math"
)

// DefaultDiceEps is the smoothing term of the soft Dice loss in the network.
const DefaultDiceEps = 1e-5

// LossParams describes class scores (logits) [N, Classes, D, H, W] and
// integer labels [N, D, H, W] of type int32, each in [0, Classes). The
// softmax is taken over the class axis at every voxel.
type LossParams struct {
	N, Classes int   // batch size and number of classes
	Size       Dims3 // spatial size
}

func (p LossParams) String() string {
	return fmt.Sprintf("LossParams{N=%d Classes=%d Size=%v}", p.N, p.Classes, p.Size)
}

// Validate reports whether the sizes describe valid logits and labels.
func (p LossParams) Validate() error {
	err := firstErr(checkSize("N", p.N), checkSize("classes", p.Classes), p.Size.checkPositive("size"))
	if err == nil {
		err = checkCount("logits", shape5(p.N, p.Classes, p.Size)...)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// LogitsLen returns the number of elements of the logits (and of the
// probabilities and the logit gradient), N·Classes·D·H·W.
func (p LossParams) LogitsLen() int { return p.N * p.Classes * p.Size.Voxels() }

// LabelsLen returns the number of labels, N·D·H·W.
func (p LossParams) LabelsLen() int { return p.N * p.Size.Voxels() }

func (p LossParams) checkLogits(op string, logits int) error {
	if err := p.Validate(); err != nil {
		return wrap(op, err)
	}
	return checkLen(op, "logits", logits, shape5(p.N, p.Classes, p.Size)...)
}

func (p LossParams) checkLabels(op string, labels []int32) error {
	if err := checkLen(op, "labels", len(labels), p.N, 1, p.Size[0], p.Size[1], p.Size[2]); err != nil {
		return err
	}
	for i, l := range labels {
		if l < 0 || int(l) >= p.Classes {
			return fmt.Errorf("%s: label %d at index %d is outside [0, %d)", op, l, i, p.Classes)
		}
	}
	return nil
}

// logSumExpAt returns log Σ_k exp(logits[n, k, v]) for sample n and voxel
// v, computed in float64 with the maximum subtracted.
func logSumExpAt[T float](p LossParams, logits []T, n, v int) float64 {
	vox := p.Size.Voxels()
	mx := math.Inf(-1)
	for k := 0; k < p.Classes; k++ {
		mx = math.Max(mx, float64(logits[(n*p.Classes+k)*vox+v]))
	}
	var s float64
	for k := 0; k < p.Classes; k++ {
		s += math.Exp(float64(logits[(n*p.Classes+k)*vox+v]) - mx)
	}
	return mx + math.Log(s)
}

// softmaxAt writes into out the softmax over the classes of the logits of
// sample n at voxel v.
func softmaxAt[T float](p LossParams, logits []T, n, v int, out []float64) {
	vox := p.Size.Voxels()
	lse := logSumExpAt(p, logits, n, v)
	for k := range out {
		out[k] = math.Exp(float64(logits[(n*p.Classes+k)*vox+v]) - lse)
	}
}

// Softmax writes the class probabilities of every voxel into probs, laid out
// like the logits.
func Softmax(p LossParams, logits, probs []float32) error { return softmax(p, logits, probs) }

// Argmax writes into labels the class of largest logit at every voxel; on
// ties it picks the lowest class, like torch.argmax.
func Argmax(p LossParams, logits []float32, labels []int32) error { return argmax(p, logits, labels) }

func softmax[T float](p LossParams, logits, probs []T) error {
	const op = "ref.Softmax"
	if err := firstErr(p.checkLogits(op, len(logits)),
		checkLen(op, "probabilities", len(probs), shape5(p.N, p.Classes, p.Size)...)); err != nil {
		return err
	}
	vox := p.Size.Voxels()
	pr := make([]float64, p.Classes)
	for n := 0; n < p.N; n++ {
		for v := 0; v < vox; v++ {
			softmaxAt(p, logits, n, v, pr)
			for k, q := range pr {
				probs[(n*p.Classes+k)*vox+v] = T(q)
			}
		}
	}
	return nil
}

func argmax[T float](p LossParams, logits []T, labels []int32) error {
	const op = "ref.Argmax"
	if err := firstErr(p.checkLogits(op, len(logits)),
		checkLen(op, "labels", len(labels), p.N, 1, p.Size[0], p.Size[1], p.Size[2])); err != nil {
		return err
	}
	vox := p.Size.Voxels()
	for n := 0; n < p.N; n++ {
		for v := 0; v < vox; v++ {
			best := 0
			bv := logits[n*p.Classes*vox+v]
			for k := 1; k < p.Classes; k++ {
				// A NaN counts as the largest value, as in torch.argmax.
				if l := logits[(n*p.Classes+k)*vox+v]; !math.IsNaN(float64(bv)) && (l > bv || math.IsNaN(float64(l))) {
					best, bv = k, l
				}
			}
			labels[n*vox+v] = int32(best)
		}
	}
	return nil
}

// CrossEntropy returns the softmax cross-entropy of the logits against the
// labels, averaged over every voxel of the batch (PyTorch's CrossEntropyLoss
// with reduction "mean", no class weights, no ignored index and no label
// smoothing). If dlogits is not nil it receives the loss's gradient with
// respect to the logits, (softmax − onehot)/(N·D·H·W).
func CrossEntropy(p LossParams, logits []float32, labels []int32, dlogits []float32) (float64, error) {
	return crossEntropy(p, logits, labels, dlogits)
}

func crossEntropy[T float](p LossParams, logits []T, labels []int32, dlogits []T) (float64, error) {
	const op = "ref.CrossEntropy"
	if err := firstErr(p.checkLogits(op, len(logits)), p.checkLabels(op, labels),
		checkOptLen(op, "logit gradient", len(dlogits), shape5(p.N, p.Classes, p.Size)...)); err != nil {
		return 0, err
	}
	vox := p.Size.Voxels()
	count := float64(p.N * vox)
	pr := make([]float64, p.Classes)
	var loss float64
	for n := 0; n < p.N; n++ {
		for v := 0; v < vox; v++ {
			softmaxAt(p, logits, n, v, pr)
			t := int(labels[n*vox+v])
			loss -= float64(logits[(n*p.Classes+t)*vox+v]) - logSumExpAt(p, logits, n, v)
			if len(dlogits) > 0 {
				for k, q := range pr {
					if k == t {
						q--
					}
					dlogits[(n*p.Classes+k)*vox+v] = T(q / count)
				}
			}
		}
	}
	return loss / count, nil
}

// DiceParams describes the soft Dice loss over the batch:
//
//	loss = 1 − mean over the classes k of (2·Σ p·g + Eps) / (Σ p + Σ g + Eps)
//
// where p is the softmax probability of class k, g the one-hot label of class
// k, and the sums run over every voxel of every sample of the batch. The
// classes averaged are all of them, or all but class 0 (the background) when
// IncludeBackground is false.
type DiceParams struct {
	LossParams
	Eps               float64 // smoothing term, DefaultDiceEps in the network
	IncludeBackground bool    // average over class 0 too
}

func (p DiceParams) String() string {
	return fmt.Sprintf("DiceParams{N=%d Classes=%d Size=%v Eps=%g IncludeBackground=%t}",
		p.N, p.Classes, p.Size, p.Eps, p.IncludeBackground)
}

// Validate reports whether the parameters describe a valid Dice loss.
func (p DiceParams) Validate() error {
	if err := p.LossParams.Validate(); err != nil {
		return err
	}
	var err error
	switch {
	case !(p.Eps >= 0) || math.IsInf(p.Eps, 0):
		err = fmt.Errorf("eps %g must be non-negative and finite", p.Eps)
	case !p.IncludeBackground && p.Classes < 2:
		err = fmt.Errorf("no class left once the background is excluded")
	}
	if err != nil {
		return fmt.Errorf("%v: %w", p, err)
	}
	return nil
}

// firstClass returns the first class that the loss averages over.
func (p DiceParams) firstClass() int {
	if p.IncludeBackground {
		return 0
	}
	return 1
}

// SoftDice returns the soft Dice loss of the logits against the labels as
// described by [DiceParams]. If dlogits is not nil it receives the loss's
// gradient with respect to the logits (through the softmax, so the
// background logits have a gradient even when the background is excluded).
func SoftDice(p DiceParams, logits []float32, labels []int32, dlogits []float32) (float64, error) {
	return softDice(p, logits, labels, dlogits)
}

func softDice[T float](p DiceParams, logits []T, labels []int32, dlogits []T) (float64, error) {
	const op = "ref.SoftDice"
	if err := p.Validate(); err != nil {
		return 0, wrap(op, err)
	}
	if err := firstErr(p.checkLogits(op, len(logits)), p.checkLabels(op, labels),
		checkOptLen(op, "logit gradient", len(dlogits), shape5(p.N, p.Classes, p.Size)...)); err != nil {
		return 0, err
	}
	K, vox := p.Classes, p.Size.Voxels()
	probs := make([]float64, len(logits))
	pr := make([]float64, K)
	inter := make([]float64, K) // Σ p·g per class
	sumP := make([]float64, K)  // Σ p
	sumG := make([]float64, K)  // Σ g
	for n := 0; n < p.N; n++ {
		for v := 0; v < vox; v++ {
			softmaxAt(p.LossParams, logits, n, v, pr)
			t := int(labels[n*vox+v])
			for k, q := range pr {
				probs[(n*K+k)*vox+v] = q
				sumP[k] += q
			}
			inter[t] += pr[t]
			sumG[t]++
		}
	}
	k0 := p.firstClass()
	m := float64(K - k0)
	var loss float64
	for k := k0; k < K; k++ {
		loss += (2*inter[k] + p.Eps) / (sumP[k] + sumG[k] + p.Eps)
	}
	loss = 1 - loss/m
	if len(dlogits) == 0 {
		return loss, nil
	}
	// dL/dp[k] at a voxel: −(2·g·den − num)/(m·den²) with num, den the
	// class's Dice numerator and denominator; then back through the softmax.
	dp := make([]float64, K)
	for n := 0; n < p.N; n++ {
		for v := 0; v < vox; v++ {
			t := int(labels[n*vox+v])
			var dot float64
			for k := 0; k < K; k++ {
				dp[k] = 0
				if k >= k0 {
					num := 2*inter[k] + p.Eps
					den := sumP[k] + sumG[k] + p.Eps
					g := 0.0
					if k == t {
						g = 1
					}
					dp[k] = -(2*g*den - num) / (m * den * den)
				}
				dot += dp[k] * probs[(n*K+k)*vox+v]
			}
			for k := 0; k < K; k++ {
				q := probs[(n*K+k)*vox+v]
				dlogits[(n*K+k)*vox+v] = T(q * (dp[k] - dot))
			}
		}
	}
	return loss, nil
}
