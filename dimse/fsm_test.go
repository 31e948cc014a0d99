package dimse_test

import (
	"fmt"
	"strings"
	"testing"

	"renkei/dimse"
)

// table910 is PS3.8 Table 9-10 as printed: for each event, the action in each state (Sta1 … Sta13), "-" where the
// event cannot occur.
var table910 = map[dimse.Event]string{
	dimse.Evt1:  "AE-1 - - - - - - - - - - - -",
	dimse.Evt2:  "- - - AE-2 - - - - - - - - -",
	dimse.Evt3:  "- AA-1 AA-8 - AE-3 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-6",
	dimse.Evt4:  "- AA-1 AA-8 - AE-4 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-6",
	dimse.Evt5:  "AE-5 - - - - - - - - - - - -",
	dimse.Evt6:  "- AE-6 AA-8 - AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-7",
	dimse.Evt7:  "- - AE-7 - - - - - - - - - -",
	dimse.Evt8:  "- - AE-8 - - - - - - - - - -",
	dimse.Evt9:  "- - - - - DT-1 - AR-7 - - - - -",
	dimse.Evt10: "- AA-1 AA-8 - AA-8 DT-2 AR-6 AA-8 AA-8 AA-8 AA-8 AA-8 AA-6",
	dimse.Evt11: "- - - - - AR-1 - - - - - - -",
	dimse.Evt12: "- AA-1 AA-8 - AA-8 AR-2 AR-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-6",
	dimse.Evt13: "- AA-1 AA-8 - AA-8 AA-8 AR-3 AA-8 AA-8 AR-10 AR-3 AA-8 AA-6",
	dimse.Evt14: "- - - - - - - AR-4 AR-9 - - AR-4 -",
	dimse.Evt15: "- - AA-1 AA-2 AA-1 AA-1 AA-1 AA-1 AA-1 AA-1 AA-1 AA-1 -",
	dimse.Evt16: "- AA-2 AA-3 - AA-3 AA-3 AA-3 AA-3 AA-3 AA-3 AA-3 AA-3 AA-2",
	dimse.Evt17: "- AA-5 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AR-5",
	dimse.Evt18: "- AA-2 - - - - - - - - - - AA-2",
	dimse.Evt19: "- AA-1 AA-8 - AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-8 AA-7",
}

func TestTransitionTable(t *testing.T) {
	for e := dimse.Evt1; e <= dimse.Evt19; e++ {
		want := strings.Fields(table910[e])
		if len(want) != 13 {
			t.Fatalf("%s: %d states in the test table", e, len(want))
		}
		for s := dimse.Sta1; s <= dimse.Sta13; s++ {
			act, _, ok := dimse.Transition(s, e)
			if !ok {
				act = "-"
			}
			if act != want[s-1] {
				t.Errorf("%s in %s: %s, PS3.8 Table 9-10 says %s", e, s, act, want[s-1])
			}
		}
	}
}

func TestTransitionNextStates(t *testing.T) {
	// PS3.8 Tables 9-6 to 9-9: the state each action leads to.
	next := map[string]dimse.State{
		"AE-1": dimse.Sta4, "AE-2": dimse.Sta5, "AE-3": dimse.Sta6, "AE-4": dimse.Sta1, "AE-5": dimse.Sta2, "AE-7": dimse.Sta6,
		"AE-8": dimse.Sta13, "DT-1": dimse.Sta6, "DT-2": dimse.Sta6, "AR-1": dimse.Sta7, "AR-2": dimse.Sta8, "AR-3": dimse.Sta1,
		"AR-4": dimse.Sta13, "AR-5": dimse.Sta1, "AR-6": dimse.Sta7, "AR-7": dimse.Sta8, "AR-9": dimse.Sta11, "AR-10": dimse.Sta12,
		"AA-1": dimse.Sta13, "AA-2": dimse.Sta1, "AA-3": dimse.Sta1, "AA-4": dimse.Sta1, "AA-5": dimse.Sta1, "AA-6": dimse.Sta13,
		"AA-7": dimse.Sta13, "AA-8": dimse.Sta13,
		"AE-6": 0, "AR-8": 0, // depend on the association
	}
	for e := dimse.Evt1; e <= dimse.Evt19; e++ {
		for s := dimse.Sta1; s <= dimse.Sta13; s++ {
			act, got, ok := dimse.Transition(s, e)
			if !ok {
				continue
			}
			if want, known := next[act]; !known || got != want {
				t.Errorf("%s in %s → %s leads to %v, want %v", e, s, act, got, want)
			}
		}
	}
	if _, _, ok := dimse.Transition(0, dimse.Evt1); ok {
		t.Error("state 0 has a transition")
	}
	if got := fmt.Sprint(dimse.Sta13, dimse.Evt19); got != "Sta13 Evt19" {
		t.Errorf("names: %s", got)
	}
}
