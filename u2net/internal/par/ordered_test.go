package par

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestOrderedDeliversInOrder(t *testing.T) {
	for _, c := range []struct{ first, n, workers, ahead int }{
		{0, 1, 1, 1}, {5, 20, 1, 1}, {5, 20, 4, 3}, {3, 17, 7, 16}, {0, 9, 0, 0}, {4, 0, 2, 2}, {4, -3, 2, 2},
	} {
		var got []int
		// Later indices finish sooner, so the order is the pipeline's doing.
		for v := range Ordered(context.Background(), c.first, c.n, c.workers, c.ahead, func(i int) int {
			time.Sleep(time.Duration(c.first+c.n-i) * 100 * time.Microsecond)
			return i * i
		}) {
			got = append(got, v)
		}
		if len(got) != max(c.n, 0) {
			t.Fatalf("%+v: %d results, want %d", c, len(got), c.n)
		}
		for k, v := range got {
			if i := c.first + k; v != i*i {
				t.Fatalf("%+v: result %d is %d, want f(%d) = %d", c, k, v, i, i*i)
			}
		}
	}
}

func TestOrderedBoundAndCancel(t *testing.T) {
	const ahead = 3
	var made atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	ch := Ordered(ctx, 0, 1000, 4, ahead, func(i int) int { made.Add(1); return i })
	if v := <-ch; v != 0 {
		t.Fatalf("first result %d", v)
	}
	time.Sleep(100 * time.Millisecond)
	// One taken, one held by the sender, ahead in the queue.
	if m := made.Load(); m > 1+1+ahead {
		t.Fatalf("%d results made for a consumer that took one (ahead %d)", m, ahead)
	}
	cancel()
	done := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-done:
			t.Fatal("channel not closed after cancel")
		}
	}
}
