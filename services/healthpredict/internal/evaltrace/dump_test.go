package evaltrace

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

func TestDumpHost(t *testing.T) {
	hs := os.Getenv("DUMP_HOST")
	if hs == "" {
		t.Skip()
	}
	i, _ := strconv.Atoi(hs)
	from, _ := strconv.ParseFloat(os.Getenv("DUMP_FROM"), 64)
	to, _ := strconv.ParseFloat(os.Getenv("DUMP_TO"), 64)
	c := DefaultGen()
	_, recs := c.Host(i)
	for _, r := range recs {
		if r.T >= from && r.T <= to {
			fmt.Printf("%.0f %.4f %.4f\n", r.T, float64(r.MemBytes)/float64(r.MemLimit), float64(r.FDs)/float64(r.FDLimit))
		}
	}
}

func TestDumpParams(t *testing.T) {
	if os.Getenv("DUMP_PARAMS") == "" {
		t.Skip()
	}
	c := DefaultGen()
	for _, hs := range []int{60, 65, 72} {
		rng := newRand(c, hs)
		h := newSim(rng, c.kindOf(hs), c)
		fmt.Printf("host %d kind %s level %.3f noise %.4f sawA %.3f sawP %.1f\n", hs, h.kind, h.level, h.noise, h.sawA, h.sawP)
	}
}
