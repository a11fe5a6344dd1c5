package predict

import (
	"fmt"
	"maps"
	"time"
)

// episode is the life of one (host, cause) prediction: at most one is open.
type episode struct {
	host, cause string
	open        bool
	pred        Prediction
	holdSince   time.Time // start of the current run of evaluations that held (zero: not holding)
	lastHold    time.Time // last evaluation that held (or adoption time)
	// fixed: the expected time is set at opening and never revised (surges).
	fixed bool
}

// step applies one evaluation at event time now: c is the predictor's
// current claim, or nil when its condition does not hold; why explains a
// clear. It returns a decision when one is due.
func (e *episode) step(cfg Config, now time.Time, c *candidate, why string) (Decision, bool) {
	if c == nil {
		e.holdSince = time.Time{}
		if e.open && now.Sub(e.lastHold) >= cfg.ClearAfter {
			e.open = false
			return Decision{Kind: Clear, At: now, Prediction: e.pred, Reason: why}, true
		}
		return Decision{}, false
	}
	held := now
	if !c.at.IsZero() {
		held = c.at
	}
	if e.holdSince.IsZero() {
		e.holdSince = held
	}
	e.lastHold = now
	if !e.open {
		hold := cfg.OpenAfter
		if c.fast {
			hold = min(hold, cfg.FastOpenAfter)
		}
		if held.Sub(e.holdSince) < hold {
			return Decision{}, false
		}
		e.open = true
		rev := 0
		id := fmt.Sprintf("%s.%s.%d", e.host, e.cause, now.UnixMilli())
		if e.pred.ID == id { // reopened at the same instant (adopted then withdrawn)
			rev = e.pred.Revision + 1
		}
		e.pred = Prediction{ID: id, Host: e.host, Cause: e.cause, ExpectedOfflineAt: c.expected,
			Confidence: c.confidence, Evidence: c.evidence, Revision: rev}
		return Decision{Kind: Open, At: now, Prediction: e.pred}, true
	}
	if e.fixed || !material(cfg, now, e.pred.ExpectedOfflineAt, c.expected) {
		return Decision{}, false
	}
	e.pred.Revision++
	e.pred.ExpectedOfflineAt, e.pred.Confidence, e.pred.Evidence = c.expected, c.confidence, c.evidence
	return Decision{Kind: Update, At: now, Prediction: e.pred}, true
}

// material reports whether moving the expected time from old to next is
// worth a revision.
func material(cfg Config, now, old, next time.Time) bool {
	shift := next.Sub(old)
	if shift < 0 {
		shift = -shift
	}
	togo := old.Sub(now)
	if togo < 0 {
		togo = 0
	}
	limit := time.Duration(cfg.UpdateFraction * float64(togo))
	if limit < cfg.UpdateMinShift {
		limit = cfg.UpdateMinShift
	}
	return shift > limit
}

// set makes the episode open with p (a scheduled cause: maintenance, drain)
// and returns the decision that publishes it, if any.
func (e *episode) set(now time.Time, p Prediction) (Decision, bool) {
	if !e.open {
		e.open = true
		e.pred = p
		return Decision{Kind: Open, At: now, Prediction: e.pred}, true
	}
	if p.ExpectedOfflineAt.Equal(e.pred.ExpectedOfflineAt) && maps.Equal(p.Labels, e.pred.Labels) {
		return Decision{}, false // the same prediction (whatever its derived id)
	}
	p.ID = e.pred.ID // one open prediction per host and cause: revise it
	p.Revision = e.pred.Revision + 1
	e.pred = p
	return Decision{Kind: Update, At: now, Prediction: e.pred}, true
}

// close clears an open episode.
func (e *episode) close(now time.Time, why string) (Decision, bool) {
	if !e.open {
		return Decision{}, false
	}
	e.open = false
	e.holdSince = time.Time{}
	return Decision{Kind: Clear, At: now, Prediction: e.pred, Reason: why}, true
}
