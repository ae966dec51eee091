package publish
import ("testing";"time";"context")
func TestTmpTiming(t *testing.T) {
	for i := 0; i < 8; i++ {
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())
	if err := n.Publish(testCtx(t), delivery(t, "wh_r1", batchBody)); err != nil { t.Fatal(err) }
	env.emb.Shutdown()
	st := env.nc.Status()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t0 := time.Now()
	err := n.Publish(ctx, delivery(t, "wh_r2", batchBody))
	cancel()
	t.Logf("status before %v publish took %v: %v", st, time.Since(t0), err)
	env.emb = startEmbedded(t, "127.0.0.1:0", t.TempDir())
	}
}
