// Replays Vivaldi RTT samples through HashiCorp Serf's coordinate package (the code Consul
// and Serf run) and prints the pairwise RTT estimates, for benchmarks/routing.py.
//
// stdin:  {"nodes": ["a", ...], "samples": [["a", "b", 66.2], ...]}  (ms; a observed b)
// stdout: {"a|b": 65.1, ...}  (ms, each unordered pair once, a < b)
package main

import (
	"encoding/json"
	"os"
	"time"

	"github.com/hashicorp/serf/coordinate"
)

type input struct {
	Nodes   []string        `json:"nodes"`
	Samples [][]interface{} `json:"samples"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	clients := map[string]*coordinate.Client{}
	for _, n := range in.Nodes {
		c, err := coordinate.NewClient(coordinate.DefaultConfig())
		if err != nil {
			panic(err)
		}
		clients[n] = c
	}
	for _, s := range in.Samples {
		a, b, ms := s[0].(string), s[1].(string), s[2].(float64)
		rtt := time.Duration(ms * float64(time.Millisecond))
		if _, err := clients[a].Update(b, clients[b].GetCoordinate(), rtt); err != nil {
			panic(err)
		}
	}
	out := map[string]float64{}
	for i, a := range in.Nodes {
		for _, b := range in.Nodes[i+1:] {
			d := clients[a].GetCoordinate().DistanceTo(clients[b].GetCoordinate())
			out[a+"|"+b] = float64(d) / float64(time.Millisecond)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}
