// Holds sockets of families CRIU cannot dump: AF_VSOCK, AF_XDP and MPTCP (each if the kernel allows it).
// Prints which ones it holds. Writes /tmp/ready when at least one is open.
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
	int held = 0;
	int v = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
	if (v >= 0) { printf("vsock fd %d\n", v); held++; }
	int x = socket(44 /* AF_XDP */, SOCK_RAW, 0);
	if (x >= 0) { printf("xdp fd %d\n", x); held++; }
	int m = socket(AF_INET, SOCK_STREAM, 262 /* IPPROTO_MPTCP */);
	if (m >= 0) { printf("mptcp fd %d\n", m); held++; }
	fflush(stdout);
	if (held == 0) { perror("no odd socket"); return 1; }
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	for (;;) pause();
}
