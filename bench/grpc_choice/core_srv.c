/* gRPC C core (libgrpc 1.51) unary server: answers any method with a fixed
 * 20-byte message. N calls requested up front; one completion queue thread. */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>

typedef struct call_s {
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *recv;
    int state;
    int cancelled;
} call_t;

static grpc_server *srv;
static grpc_completion_queue *cq;
static volatile sig_atomic_t stop;

static void request(call_t *c)
{
    memset(c, 0, sizeof *c);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    grpc_server_request_call(srv, &c->call, &c->details, &c->md, cq, cq, c);
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:50061";
    grpc_init();
    srv = grpc_server_create(NULL, NULL);
    cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv, cq, NULL);
    grpc_server_credentials *cr = grpc_insecure_server_credentials_create();
    if (!grpc_server_add_http2_port(srv, addr, cr)) {
        fprintf(stderr, "bind\n");
        return 1;
    }
    grpc_server_credentials_release(cr);
    grpc_server_start(srv);
    enum { N = 256 };
    call_t *calls = calloc(N, sizeof *calls);
    for (int i = 0; i < N; i++)
        request(&calls[i]);
    char reply[20];
    memset(reply, 'x', sizeof reply);
    reply[0] = 0x0a;
    reply[1] = 18;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        call_t *c = ev.tag;
        grpc_op ops[4];
        memset(ops, 0, sizeof ops);
        if (c->state == 0) {
            c->state = 1;
            ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
            ops[1].op = GRPC_OP_RECV_MESSAGE;
            ops[1].data.recv_message.recv_message = &c->recv;
            grpc_call_start_batch(c->call, ops, 2, c, NULL);
        } else if (c->state == 1) {
            c->state = 2;
            if (c->recv)
                grpc_byte_buffer_destroy(c->recv);
            grpc_slice s = grpc_slice_from_copied_buffer(reply, sizeof reply);
            grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
            grpc_slice_unref(s);
            ops[0].op = GRPC_OP_SEND_MESSAGE;
            ops[0].data.send_message.send_message = bb;
            ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
            ops[1].data.send_status_from_server.status = GRPC_STATUS_OK;
            ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
            grpc_call_start_batch(c->call, ops, 3, c, NULL);
            grpc_byte_buffer_destroy(bb);
        } else {
            grpc_call_unref(c->call);
            grpc_call_details_destroy(&c->details);
            grpc_metadata_array_destroy(&c->md);
            request(c);
        }
    }
    return 0;
}
