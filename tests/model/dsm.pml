/*
 * A Promela model of the dvmm DSM coherence protocol (src/dsm/protocol.cpp, docs/DSM.md),
 * checked exhaustively with spin by tests/model/check.sh.
 *
 * N nodes and P pages; the home of page p is node p % N. One FIFO channel per ordered
 * pair of nodes (the transport's guarantee); nothing is assumed across pairs. Every node
 * performs at most B local operations (a read fault, a write fault, a store when it can
 * write, an eviction), so the state space is finite; deliveries are unbounded. Each
 * node's handling of one input is one atomic step, as in the runtime (one processor per
 * node at a time). The page's bytes are a small integer: a store writes the next value.
 *
 * The transitions mirror protocol.cpp one for one: the home serializes transactions per
 * page and queues requests, acts on its own copy directly (no messages to itself), keeps
 * a copy in Shared, and grants without data when the requester still shares. Sequence
 * numbers are left out: with FIFO channels they only catch forged messages, and every
 * place where protocol.cpp would reject a message is an assertion here instead.
 *
 * Checked:
 *  - after every step: at most one writer, a writer excludes readers, every readable
 *    copy holds the last written value (so a read after a write sees it), the home is a
 *    sharer in Shared, no channel or queue overflows;
 *  - no protocol error: each message is valid in the receiver's state (assertions);
 *  - no deadlock: when nothing can move (timeout), every request was granted, every
 *    channel and queue is empty and the directory matches the nodes exactly; pan's own
 *    invalid-end-state check covers blocked processes.
 */

#ifndef N
#define N 3
#endif
#ifndef P
#define P 1
#endif
#ifndef B
#define B 2
#endif

#define CCAP (4 * P)      /* per pair and page: a request, an evict and an ack, or a grant and a revocation */
#define QCAP 6            /* per page: one read/write and one evict request per node */

#define NONE 0
#define READ 1
#define RW 2

#define KREAD 0
#define KWRITE 1
#define KEVICT 2

#define EXCL 0
#define SHARED 1

#define SRC_NONE 0
#define SRC_LOCAL 1
#define SRC_IN 2

#define IX(n, p) ((n) * P + (p))
#define CH(f, t) ((f) * N + (t))
#define HOME(p) ((p) % N)
#define BIT(n) (1 << (n))

mtype = { READREQ, WRITEREQ, EVICTREQ, DOWNGRADE, FETCHINV, INV, DOWNACK, FETCHACK, INVACK,
          GRANT, GRANTDATA };

/* node side, per (node, page) */
byte access[N * P];
byte pending[N * P];
byte wanted[N * P];
bool evicting[N * P];
byte val[N * P];
/* the last value written to each page */
byte latest[P];
/* home side, per page (touched only by the page's home) */
byte mode[P];
byte owner[P];
byte sharers[P];
bool busy[P];
byte txn_node[P];
byte txn_kind[P];
byte waiting[P];
chan q[P] = [QCAP] of { byte, byte };
/* the network: ch[CH(from, to)] */
chan ch[N * N] = [CCAP] of { mtype, byte, byte, byte };

inline send(to, t, pg, a, d) {
  assert(len(ch[CH(me, to)]) < CCAP);
  ch[CH(me, to)]!t, pg, a, d
}

/* The invariants, over every page and node. */
inline check() {
  pp = 0;
  do
  :: pp < P ->
     writers = 0; readers = 0; k = 0;
     do
     :: k < N ->
        if
        :: access[IX(k, pp)] == RW -> writers++
        :: access[IX(k, pp)] == READ -> readers++
        :: else -> skip
        fi;
        if
        :: access[IX(k, pp)] != NONE -> assert(val[IX(k, pp)] == latest[pp])
        :: else -> skip
        fi;
        k++
     :: else -> break
     od;
     assert(writers <= 1);
     assert(writers == 0 || readers == 0);
     if
     :: mode[pp] == SHARED -> assert(sharers[pp] & BIT(HOME(pp)))
     :: else -> skip
     fi;
     pp++
  :: else -> break
  od
}

/* Temporaries back to zero after every step, so that leftovers do not split states. */
inline reset() {
  m = 0; from = 0; pg = 0; a = 0; dat = 0;
  rk = 0; tn = 0; nd = 0; qn = 0; qk = 0; wn = 0; others = 0; k = 0; pp = 0;
  writers = 0; readers = 0; had = 0
}

inline finish(p) {
  busy[p] = 0;
  waiting[p] = 0
}

/* Grant to rn; at the home itself, act on the local copy. */
inline grant(p, rn, a, src) {
  if
  :: rn != me ->
     if
     :: src == SRC_NONE -> send(rn, GRANT, p, a, 0)
     :: src == SRC_LOCAL -> send(rn, GRANTDATA, p, a, val[IX(me, p)])
     :: src == SRC_IN -> send(rn, GRANTDATA, p, a, dat)
     fi
  :: else ->
     if
     :: src == SRC_IN -> assert(access[IX(me, p)] == NONE); val[IX(me, p)] = dat
     :: else -> skip
     fi;
     access[IX(me, p)] = a;
     pending[IX(me, p)] = NONE;
     if
     :: wanted[IX(me, p)] != NONE && access[IX(me, p)] < wanted[IX(me, p)] ->
        pending[IX(me, p)] = wanted[IX(me, p)];
        assert(len(q[p]) < QCAP);
        if
        :: wanted[IX(me, p)] == RW -> q[p]!me, KWRITE
        :: else -> q[p]!me, KREAD
        fi
     :: else -> skip
     fi;
     wanted[IX(me, p)] = NONE
  fi
}

/* All other sharers are gone: hand the page over exclusively. */
inline write_from_shared(p) {
  wn = txn_node[p];
  had = ((sharers[p] & BIT(wn)) != 0);
  mode[p] = EXCL;
  owner[p] = wn;
  sharers[p] = 0;
  if
  :: had -> grant(p, wn, RW, SRC_NONE)
  :: else -> grant(p, wn, RW, SRC_LOCAL)
  fi;
  finish(p)
}

inline begin(p, bn, bk) {
  busy[p] = 1;
  txn_node[p] = bn;
  txn_kind[p] = bk;
  waiting[p] = 0;
  if
  :: bk == KREAD ->
     if
     :: mode[p] == EXCL && owner[p] == bn ->
        grant(p, bn, RW, SRC_NONE); finish(p)
     :: mode[p] == EXCL && owner[p] != bn && owner[p] == me ->
        access[IX(me, p)] = READ;
        mode[p] = SHARED;
        sharers[p] = BIT(me) | BIT(bn);
        grant(p, bn, READ, SRC_LOCAL); finish(p)
     :: mode[p] == EXCL && owner[p] != bn && owner[p] != me ->
        waiting[p] = BIT(owner[p]);
        send(owner[p], DOWNGRADE, p, 0, 0)
     :: mode[p] == SHARED && (sharers[p] & BIT(bn)) ->
        grant(p, bn, READ, SRC_NONE); finish(p)
     :: mode[p] == SHARED && !(sharers[p] & BIT(bn)) ->
        sharers[p] = sharers[p] | BIT(bn);
        grant(p, bn, READ, SRC_LOCAL); finish(p)
     fi
  :: bk == KWRITE ->
     if
     :: mode[p] == EXCL && owner[p] == bn ->
        grant(p, bn, RW, SRC_NONE); finish(p)
     :: mode[p] == EXCL && owner[p] != bn && owner[p] == me ->
        access[IX(me, p)] = NONE;
        owner[p] = bn;
        grant(p, bn, RW, SRC_LOCAL); finish(p)
     :: mode[p] == EXCL && owner[p] != bn && owner[p] != me ->
        waiting[p] = BIT(owner[p]);
        send(owner[p], FETCHINV, p, 0, 0)
     :: mode[p] == SHARED ->
        others = sharers[p] & ~BIT(bn);
        if
        :: others & BIT(me) -> access[IX(me, p)] = NONE; others = others & ~BIT(me)
        :: else -> skip
        fi;
        waiting[p] = others;
        k = 0;
        do
        :: k < N ->
           if
           :: others & BIT(k) -> send(k, INV, p, 0, 0)
           :: else -> skip
           fi;
           k++
        :: else -> break
        od;
        if
        :: others == 0 -> write_from_shared(p)
        :: else -> skip
        fi
     fi
  :: bk == KEVICT ->
     if
     :: bn != me && mode[p] == EXCL && owner[p] == bn ->
        waiting[p] = BIT(bn);
        send(bn, FETCHINV, p, 0, 0)
     :: bn != me && mode[p] == SHARED && (sharers[p] & BIT(bn)) ->
        waiting[p] = BIT(bn);
        send(bn, INV, p, 0, 0)
     :: else -> finish(p)
     fi
  fi
}

/* Serve queued requests while the page is free. Every step ends with this, so a request
 * queued at a free page starts in the same step (protocol.cpp: submit and drain). */
inline drain(p) {
  do
  :: !busy[p] && len(q[p]) > 0 ->
     q[p]?qn, qk;
     begin(p, qn, qk)
  :: else -> break
  od
}

inline submit(p, sn, sk) {
  assert(len(q[p]) < QCAP);
  q[p]!sn, sk
}

inline issue_request(p, need) {
  pending[IX(me, p)] = need;
  wanted[IX(me, p)] = NONE;
  if
  :: HOME(p) == me ->
     if
     :: need == RW -> submit(p, me, KWRITE)
     :: else -> submit(p, me, KREAD)
     fi
  :: else ->
     if
     :: need == RW -> send(HOME(p), WRITEREQ, p, 0, 0)
     :: else -> send(HOME(p), READREQ, p, 0, 0)
     fi
  fi
}

inline local_fault(p, need) {
  if
  :: access[IX(me, p)] >= need -> skip
  :: access[IX(me, p)] < need && pending[IX(me, p)] != NONE ->
     if
     :: pending[IX(me, p)] < need && wanted[IX(me, p)] < need -> wanted[IX(me, p)] = need
     :: else -> skip
     fi
  :: access[IX(me, p)] < need && pending[IX(me, p)] == NONE ->
     issue_request(p, need)
  fi
}

inline on_message() {
  if
  :: m == READREQ || m == WRITEREQ || m == EVICTREQ ->
     assert(HOME(pg) == me);
     if
     :: m == READREQ -> rk = KREAD
     :: m == WRITEREQ -> rk = KWRITE
     :: m == EVICTREQ -> rk = KEVICT
     fi;
     /* one read/write and one evict request per node at a time */
     if
     :: rk == KEVICT ->
        assert(!(busy[pg] && txn_node[pg] == from && txn_kind[pg] == KEVICT));
        assert(!(q[pg]??[eval(from), KEVICT]))
     :: else ->
        assert(!(busy[pg] && txn_node[pg] == from && txn_kind[pg] != KEVICT));
        assert(!(q[pg]??[eval(from), KREAD]));
        assert(!(q[pg]??[eval(from), KWRITE]))
     fi;
     submit(pg, from, rk)
  :: m == DOWNACK || m == FETCHACK || m == INVACK ->
     assert(HOME(pg) == me && busy[pg] && (waiting[pg] & BIT(from)));
     if
     :: mode[pg] == SHARED -> assert(m == INVACK)
     :: mode[pg] == EXCL && txn_kind[pg] == KREAD -> assert(m == DOWNACK)
     :: mode[pg] == EXCL && txn_kind[pg] != KREAD -> assert(m == FETCHACK)
     fi;
     waiting[pg] = waiting[pg] & ~BIT(from);
     tn = txn_node[pg];
     if
     :: m == DOWNACK ->
        /* Exclusive -> Shared: the data passes through the home, which keeps a copy */
        assert(access[IX(me, pg)] == NONE);
        val[IX(me, pg)] = dat;
        access[IX(me, pg)] = READ;
        mode[pg] = SHARED;
        sharers[pg] = BIT(from) | BIT(me) | BIT(tn);
        if
        :: tn == me -> grant(pg, tn, READ, SRC_LOCAL)
        :: else -> grant(pg, tn, READ, SRC_IN)
        fi;
        finish(pg)
     :: m == FETCHACK && txn_kind[pg] == KWRITE ->
        owner[pg] = tn;
        grant(pg, tn, RW, SRC_IN);
        finish(pg)
     :: m == FETCHACK && txn_kind[pg] == KEVICT ->
        assert(access[IX(me, pg)] == NONE);
        val[IX(me, pg)] = dat;
        access[IX(me, pg)] = RW;
        owner[pg] = me;
        finish(pg)
     :: m == INVACK && waiting[pg] != 0 -> skip
     :: m == INVACK && waiting[pg] == 0 && txn_kind[pg] == KWRITE ->
        write_from_shared(pg)
     :: m == INVACK && waiting[pg] == 0 && txn_kind[pg] == KEVICT ->
        sharers[pg] = sharers[pg] & ~BIT(from);
        finish(pg)
     fi
  :: m == GRANT || m == GRANTDATA ->
     assert(HOME(pg) != me && from == HOME(pg));
     assert(pending[IX(me, pg)] != NONE && a >= pending[IX(me, pg)] && a != NONE);
     if
     :: m == GRANTDATA -> assert(access[IX(me, pg)] == NONE); val[IX(me, pg)] = dat
     :: m == GRANT -> assert(access[IX(me, pg)] != NONE)
     fi;
     access[IX(me, pg)] = a;
     pending[IX(me, pg)] = NONE;
     nd = wanted[IX(me, pg)];
     wanted[IX(me, pg)] = NONE;
     if
     :: nd != NONE && access[IX(me, pg)] < nd -> issue_request(pg, nd)
     :: else -> skip
     fi
  :: m == DOWNGRADE ->
     assert(HOME(pg) != me && from == HOME(pg) && access[IX(me, pg)] == RW);
     access[IX(me, pg)] = READ;
     send(from, DOWNACK, pg, 0, val[IX(me, pg)])
  :: m == FETCHINV ->
     assert(HOME(pg) != me && from == HOME(pg) && access[IX(me, pg)] == RW);
     access[IX(me, pg)] = NONE;
     evicting[IX(me, pg)] = 0;
     send(from, FETCHACK, pg, 0, val[IX(me, pg)])
  :: m == INV ->
     /* also while this node's own upgrade is outstanding */
     assert(HOME(pg) != me && from == HOME(pg) && access[IX(me, pg)] == READ);
     access[IX(me, pg)] = NONE;
     evicting[IX(me, pg)] = 0;
     send(from, INVACK, pg, 0, 0)
  fi
}

proctype Node(byte me) {
  byte budget = B;
  mtype m;
  byte from, pg, a, dat;
  byte rk, tn, nd, qn, qk, wn, others, k, pp, writers, readers;
  bool had;
end:
  do
  :: atomic {
       if
       :: ch[CH(0, me)]?m, pg, a, dat -> from = 0
       :: ch[CH(1, me)]?m, pg, a, dat -> from = 1
       :: ch[CH(2, me)]?m, pg, a, dat -> from = 2
#if N > 3
       :: ch[CH(3, me)]?m, pg, a, dat -> from = 3
#endif
       fi;
       on_message();
       drain(pg);
       check();
       reset()
     }
  :: atomic {
       budget > 0 ->
       budget--;
       /* any page */
       pg = 0;
       do
       :: pg < P - 1 -> pg++
       :: break
       od;
       if
       :: access[IX(me, pg)] == NONE -> local_fault(pg, READ)
       :: access[IX(me, pg)] != RW -> local_fault(pg, RW)
       :: access[IX(me, pg)] == RW ->
          /* a store by a local hart */
          latest[pg] = latest[pg] + 1;
          val[IX(me, pg)] = latest[pg]
       :: access[IX(me, pg)] != NONE && HOME(pg) != me && !evicting[IX(me, pg)] &&
          pending[IX(me, pg)] == NONE ->
          evicting[IX(me, pg)] = 1;
          send(HOME(pg), EVICTREQ, pg, 0, 0)
       fi;
       drain(pg);
       check();
       reset()
     }
  od
}

/* When nothing can move any more, everything asked for must have been served. */
active proctype quiescence() {
  byte i, j;
  timeout ->
  atomic {
    i = 0;
    do
    :: i < N * N -> assert(len(ch[i]) == 0); i++
    :: else -> break
    od;
    j = 0;
    do
    :: j < P ->
       assert(!busy[j] && len(q[j]) == 0);
       i = 0;
       do
       :: i < N ->
          assert(pending[IX(i, j)] == NONE && !evicting[IX(i, j)]);
          if
          :: mode[j] == EXCL && owner[j] == i -> assert(access[IX(i, j)] == RW)
          :: mode[j] == EXCL && owner[j] != i -> assert(access[IX(i, j)] == NONE)
          :: mode[j] == SHARED && (sharers[j] & BIT(i)) -> assert(access[IX(i, j)] == READ)
          :: mode[j] == SHARED && !(sharers[j] & BIT(i)) -> assert(access[IX(i, j)] == NONE)
          fi;
          i++
       :: else -> break
       od;
       j++
    :: else -> break
    od
  }
}

init {
  byte n, p;
  atomic {
    /* every page exclusively owned by its home */
    p = 0;
    do
    :: p < P ->
       mode[p] = EXCL;
       owner[p] = HOME(p);
       access[IX(HOME(p), p)] = RW;
       p++
    :: else -> break
    od;
    n = 0;
    do
    :: n < N -> run Node(n); n++
    :: else -> break
    od
  }
}
