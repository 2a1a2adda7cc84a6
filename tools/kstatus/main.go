// kstatus: computes the kstatus result (sigs.k8s.io/cli-utils/pkg/kstatus/status, the
// library behind `kubectl wait`-style readiness in Flux, kpt and cli-utils appliers) of
// Kubernetes objects. Input on stdin: a JSON array of objects. Output on stdout: a JSON
// array of {"status", "message"} in the same order. Built by scripts/build-tools.sh; the
// tests in tests/unit/gitops run Kiln's status objects through it.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func main() {
	// apimachinery's JSON decoding keeps integers int64, as the apiserver's objects have them
	// (encoding/json would make metadata.generation a float64, which kstatus rejects).
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading stdin:", err)
		os.Exit(2)
	}
	var objects []map[string]interface{}
	if err := utiljson.Unmarshal(input, &objects); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading a JSON array of objects from stdin:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(objects))
	for _, object := range objects {
		res, err := status.Compute(&unstructured.Unstructured{Object: object})
		if err != nil {
			results = append(results, result{Status: "Error", Error: err.Error()})
			continue
		}
		results = append(results, result{Status: res.Status.String(), Message: res.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
