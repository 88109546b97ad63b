package par

import "context"

// Ordered calls f(first), f(first+1), … (n calls; none when n ≤ 0) on
// workers goroutines and delivers the results in order on the
// returned channel, which is closed after the last one or once ctx is
// cancelled. At most ahead+1 results are made (or being made) before the
// consumer takes them, which bounds the memory a slow consumer costs; the
// workers run in parallel only as far as ahead allows. The sequence is the
// same whatever the number of workers, since f sees only the index.
func Ordered[T any](ctx context.Context, first, n, workers, ahead int, f func(i int) T) <-chan T {
	workers, ahead = max(workers, 1), max(ahead, 1)
	type job struct {
		i   int
		res chan T
	}
	out := make(chan T)
	jobs := make(chan job)
	// pending holds the result slots in index order; its capacity bounds
	// the results made ahead.
	pending := make(chan chan T, ahead)
	for range workers {
		go func() {
			for j := range jobs {
				j.res <- f(j.i)
			}
		}()
	}
	go func() {
		defer close(jobs)
		defer close(pending)
		for i := 0; i < n; i++ {
			res := make(chan T, 1)
			select {
			case pending <- res:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{first + i, res}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer close(out)
		for res := range pending {
			var v T
			select {
			case v = <-res:
			case <-ctx.Done():
				return
			}
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
