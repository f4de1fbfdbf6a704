package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// readResultsMD reads the tables of a RESULTS.md back into a runner, for
// results written before results.json existed: its figures are the
// tables', rounded as printed (three significant digits), which is enough
// to draw them.
func readResultsMD(dir string) (*runner, error) {
	f, err := os.Open(filepath.Join(dir, "RESULTS.md"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &runner{}
	var t *table   // the section being read
	var cols []int // table column index → index in t.columns, -1 for the others
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "| servers | ") {
			for _, s := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(line, "| servers | "), " |"), ",") {
				r.servers = append(r.servers, serverSpec{name: strings.Trim(strings.TrimSpace(s), "`")})
			}
		}
		if title, ok := strings.CutPrefix(line, "## "); ok {
			t, cols = nil, nil
			for i := range tables {
				if tables[i].title == title {
					t = &tables[i]
				}
			}
			continue
		}
		if t == nil || !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if cols == nil {
			cols = columnsOf(*t, cells)
			continue
		}
		if len(cells) != len(cols) || strings.HasPrefix(cells[0], "---") {
			continue
		}
		n, err := strconv.Atoi(cells[0])
		if err != nil {
			continue
		}
		res := &result{scenario: t.scenario, server: strings.Trim(cells[1], "`"), point: n, median: metrics{}}
		for i, c := range cols {
			if c < 0 {
				continue
			}
			v, problem, ok := parseCell(cells[i])
			if problem {
				res.problem = "marked ⚠ in RESULTS.md"
			}
			if m := t.columns[c].metric; ok && m == mConnectSecs {
				res.median[m] = v / float64(time.Second) // printed as a duration, kept in seconds
			} else if ok {
				res.median[m] = v
			}
		}
		r.results = append(r.results, res)
		if !contains(r.cfg.Scenarios, t.scenario) {
			r.cfg.Scenarios = append(r.cfg.Scenarios, t.scenario)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(r.results) == 0 {
		return nil, fmt.Errorf("%s: no results table", filepath.Join(dir, "RESULTS.md"))
	}
	return r, nil
}

// columnsOf maps the cells of a table's header to t's columns: the index
// in t.columns of each cell, -1 for the point, the server and "vs net".
func columnsOf(t table, head []string) []int {
	cols := make([]int, len(head))
	for i, h := range head {
		cols[i] = -1
		for j, c := range t.columns {
			if c.title == h {
				cols[i] = j
			}
		}
	}
	return cols
}

// parseCell reads a figure as RESULTS.md prints it (fmtRate, fmtNs,
// fmtBytes, a percentage or a plain number), and whether it is marked ⚠.
func parseCell(s string) (v float64, problem, ok bool) {
	s, problem = strings.CutSuffix(strings.TrimSpace(s), " ⚠")
	if s == "–" || s == "" {
		return 0, problem, false
	}
	if p, found := strings.CutSuffix(s, "%"); found {
		v, err := strconv.ParseFloat(p, 64)
		return v, problem, err == nil
	}
	for i, unit := range []string{" B", " KiB", " MiB", " GiB"} {
		if num, found := strings.CutSuffix(s, unit); found {
			v, err := strconv.ParseFloat(num, 64)
			for range i {
				v *= 1024
			}
			return v, problem, err == nil
		}
	}
	for suffix, mult := range map[string]float64{"k": 1e3, "M": 1e6} {
		if num, found := strings.CutSuffix(s, suffix); found {
			v, err := strconv.ParseFloat(num, 64)
			return v * mult, problem, err == nil
		}
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return v, problem, true
	}
	if d, err := time.ParseDuration(s); err == nil {
		return float64(d), problem, true
	}
	return 0, problem, false
}
