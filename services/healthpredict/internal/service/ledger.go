package service

import (
	"time"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
)

// ledger is what has been published on ferry.evt.health.> by any replica
// (read back from FERRY_EVENTS): the stored event ids, the latest state of
// each prediction, and the last host_down of each host. It lets a replica
// skip what another already published, and adopt open predictions after a
// restart.
type ledger struct {
	ids  map[string]struct{}
	last map[string]ledgerEntry // by prediction id
	open map[hostCause]string   // open prediction id of a host and cause
	down map[string]time.Time   // last host_down DetectedAt of a host
}

type hostCause struct{ host, cause string }

type ledgerEntry struct {
	p    predict.Prediction
	open bool
}

func newLedger() *ledger {
	return &ledger{ids: map[string]struct{}{}, last: map[string]ledgerEntry{}, open: map[hostCause]string{},
		down: map[string]time.Time{}}
}

// has reports whether an event with this id was stored.
func (l *ledger) has(id string) bool {
	_, ok := l.ids[id]
	return ok
}

// predicted records an outage_predicted event.
func (l *ledger) predicted(id string, e events.OutagePredicted) predict.Prediction {
	l.ids[id] = struct{}{}
	p := predictionOf(e)
	if old, ok := l.last[p.ID]; ok && old.p.Revision > p.Revision {
		return old.p // an older revision arriving late
	}
	l.last[p.ID] = ledgerEntry{p: p, open: true}
	l.open[hostCause{p.Host, p.Cause}] = p.ID
	return p
}

// cleared records an outage_cleared event.
func (l *ledger) cleared(id string, e events.OutageCleared) {
	l.ids[id] = struct{}{}
	ent, ok := l.last[e.PredictionID]
	if ok && ent.p.Revision > e.Revision {
		return // cleared an older revision; a newer one is open
	}
	ent.open = false
	if !ok {
		ent.p = predict.Prediction{ID: e.PredictionID, Host: e.Host, Cause: e.Cause, Revision: e.Revision}
	}
	l.last[e.PredictionID] = ent
	k := hostCause{e.Host, e.Cause}
	if l.open[k] == e.PredictionID {
		delete(l.open, k)
	}
}

// hostDown records a host_down event.
func (l *ledger) hostDown(id string, e events.HostDown) {
	l.ids[id] = struct{}{}
	if e.DetectedAt.After(l.down[e.Host]) {
		l.down[e.Host] = e.DetectedAt
	}
}

// openPredictions returns the open predictions, by host and cause.
func (l *ledger) openPredictions() []predict.Prediction {
	var out []predict.Prediction
	for _, id := range l.open {
		out = append(out, l.last[id].p)
	}
	sortPredictions(out)
	return out
}

// known reports whether prediction id was ever published, and whether it is open.
func (l *ledger) known(id string) (seen, open bool) {
	e, ok := l.last[id]
	return ok, e.open
}

func predictionOf(e events.OutagePredicted) predict.Prediction {
	return predict.Prediction{ID: e.PredictionID, Host: e.Host, Cause: e.Cause, ExpectedOfflineAt: e.ExpectedOfflineAt,
		Confidence: e.Confidence, Evidence: e.Evidence, Labels: e.Labels, Revision: e.Revision}
}
