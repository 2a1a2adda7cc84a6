//go:build tools

// Package tools pins the Prometheus commands built by scripts/build-tools.sh: the server,
// and promtool, which the manifest tests use to check the alerting rules and the PromQL
// of the Grafana dashboards.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
