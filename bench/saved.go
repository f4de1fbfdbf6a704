package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// savedFile is the name of a run's results as data, beside RESULTS.md.
const savedFile = "results.json"

// A savedRun is what results.json holds: enough to redraw the plots (and
// to compare runs) without running the loads again.
type savedRun struct {
	Date      time.Time     `json:"date"`
	Quick     bool          `json:"quick"`
	Repeat    int           `json:"repeat"`
	Duration  string        `json:"duration"`
	Warmup    string        `json:"warmup"`
	Scenarios []string      `json:"scenarios"`
	Servers   []string      `json:"servers"`
	Notes     []string      `json:"notes,omitempty"`
	Results   []savedResult `json:"results"`
}

// A savedResult is one result: a point of a scenario on a server.
type savedResult struct {
	Scenario string             `json:"scenario"`
	Server   string             `json:"server"`
	Point    int                `json:"point"`
	Runs     int                `json:"runs"`
	Median   map[string]float64 `json:"median,omitempty"` // by metric name; times in ns, sizes in bytes
	Problem  string             `json:"problem,omitempty"`
	Skipped  string             `json:"skipped,omitempty"`
}

// save writes results.json into dir.
func (r *runner) save(dir string) error {
	s := savedRun{
		Date: r.machine.date, Quick: r.cfg.Quick, Repeat: r.cfg.Repeat,
		Duration: r.cfg.Duration.String(), Warmup: r.cfg.Warmup.String(),
		Scenarios: r.cfg.Scenarios, Notes: r.notes,
	}
	for _, sv := range r.servers {
		s.Servers = append(s.Servers, sv.name)
	}
	for _, res := range r.results {
		s.Results = append(s.Results, savedResult{
			Scenario: res.scenario, Server: res.server, Point: res.point, Runs: res.runs,
			Median: res.median, Problem: res.problem, Skipped: res.skipped,
		})
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, savedFile), append(b, '\n'), 0o644)
}

// loadSaved reads the results.json of dir into a runner that can draw
// them.
func loadSaved(dir string) (*runner, error) {
	b, err := os.ReadFile(filepath.Join(dir, savedFile))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("--replot %s: no %s there (a run writes it beside RESULTS.md; older results have none, so their plots cannot be redrawn without running again)", dir, savedFile)
		}
		return nil, fmt.Errorf("--replot: %v", err)
	}
	var s savedRun
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("--replot: %s: %v", filepath.Join(dir, savedFile), err)
	}
	r := &runner{cfg: Config{Quick: s.Quick, Repeat: s.Repeat, Scenarios: s.Scenarios}, notes: s.Notes}
	for _, name := range s.Servers {
		r.servers = append(r.servers, serverSpec{name: name})
	}
	for _, res := range s.Results {
		r.results = append(r.results, &result{
			scenario: res.Scenario, server: res.Server, point: res.Point, runs: res.Runs,
			median: res.Median, problem: res.Problem, skipped: res.Skipped,
		})
	}
	return r, nil
}

// replot redraws the plots of dir from its results.json or, where there
// is none (results written before it existed), from the tables of its
// RESULTS.md.
func replot(dir string) (from string, err error) {
	from = savedFile
	r, err := loadSaved(dir)
	if err != nil {
		var mdErr error
		if r, mdErr = readResultsMD(dir); mdErr != nil {
			return "", fmt.Errorf("%v; nor could RESULTS.md be read: %v", err, mdErr)
		}
		from = "RESULTS.md's tables"
	}
	if err := r.plots(dir); err != nil {
		return "", fmt.Errorf("--replot: plots: %v", err)
	}
	return from, nil
}
