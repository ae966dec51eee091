package ingest

import (
	"context"
	"errors"
	"testing"
	"time"
)

type budgetKey struct{}

func TestBudgetCtx(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), budgetKey{}, "v"))
	c := getBudget(parent, 30*time.Millisecond)
	cancel() // the sender hanging up must not end the budget
	if c.Err() != nil {
		t.Fatalf("Err = %v before the deadline", c.Err())
	}
	if c.Value(budgetKey{}) != "v" {
		t.Fatal("values of the request context are not carried")
	}
	if dl, ok := c.Deadline(); !ok || time.Until(dl) > 30*time.Millisecond {
		t.Fatalf("Deadline = %v, %v", dl, ok)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the timeout")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v after the deadline", c.Err())
	}
	putBudget(c) // expired: must not be recycled
	for range 100 {
		if n := getBudget(context.Background(), time.Minute); n == c {
			t.Fatal("an expired budget was recycled")
		} else {
			putBudget(n)
		}
	}

	// A budget handed back in time is reused with a fresh deadline.
	a := getBudget(context.Background(), time.Minute)
	putBudget(a)
	b := getBudget(context.Background(), 20*time.Millisecond)
	defer putBudget(b)
	if b.Err() != nil {
		t.Fatalf("recycled budget: Err = %v", b.Err())
	}
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("recycled budget: Done not closed after its new timeout")
	}
	// A derived context sees the budget's deadline.
	d, dcancel := context.WithTimeout(b, time.Hour)
	defer dcancel()
	<-d.Done()
	if !errors.Is(d.Err(), context.DeadlineExceeded) {
		t.Fatalf("derived Err = %v", d.Err())
	}
}
