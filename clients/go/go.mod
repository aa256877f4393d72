// The Go client of gliner2-service. An ordinary module: with a module proxy, `go mod tidy && go build ./...`.
// Offline, install.sh writes a git-ignored vendor/ over Debian's Go sources (see README.md, Go client);
// the versions below are Debian's where the module graph allows (grpc 1.33.3, protobuf 1.28.1,
// golang/protobuf 1.5.2, x/net and x/text 0.7.0), else the lowest the graph asks for (genproto, x/sys).
module github.com/gliner2-service/gliner2-service/clients/go

go 1.19

require (
	google.golang.org/genproto v0.0.0-20200526211855-cb27e3aa2013
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)

require (
	github.com/golang/protobuf v1.5.2 // indirect
	golang.org/x/net v0.7.0 // indirect
	golang.org/x/sys v0.5.0 // indirect
	golang.org/x/text v0.7.0 // indirect
)
