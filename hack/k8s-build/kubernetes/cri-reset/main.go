// Command cri-reset stops and removes every pod sandbox of a CRI runtime, so
// that the runtime tears down their networks (CNI DEL), network namespaces
// and mounts. The local cluster's `down` runs it after the kubelet stopped
// (which would restart the pods) and before containerd stops (which is the
// one that calls the CNI plugins). crictl would do the same (`crictl rmp
// -fa`), but cri-tools is not served by the Go module proxy here, while the
// CRI API is already part of this module's graph.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cri-reset unix:///path/to/runtime.sock")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-reset: connect %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	defer conn.Close()
	client := runtime.NewRuntimeServiceClient(conn)
	list, err := client.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-reset: list pod sandboxes: %v\n", err)
		os.Exit(1)
	}
	failed := 0
	for _, sandbox := range list.Items {
		if _, err := client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: sandbox.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: stop %s (%s): %v\n", sandbox.Id, sandbox.Metadata.GetName(), err)
			failed++
			continue
		}
		if _, err := client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sandbox.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-reset: remove %s (%s): %v\n", sandbox.Id, sandbox.Metadata.GetName(), err)
			failed++
		}
	}
	fmt.Printf("cri-reset: removed %d of %d pod sandboxes\n", len(list.Items)-failed, len(list.Items))
	if failed > 0 {
		os.Exit(1)
	}
}
