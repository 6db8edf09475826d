// Entry points, trap vector and U-mode entry/exit for the bare-metal test runtime (rt.h).
#define FRAME 288          // struct trap_frame: 32 + 4 registers
#define CTX 16             // offsetof(struct hart_data, user_ctx)
#define STACK_SIZE 16384

  .section .text.start, "ax"
  .global _start
_start:
  // A RISC-V Linux Image header (Documentation/riscv/boot-image-header.rst), so that the
  // raw binary (objcopy -O binary) boots with `dvmm run --kernel` like a kernel; loaders
  // that enter the ELF at _start just jump over it.
  .option push
  .option norvc
  j .Lafter_header        // code0
  .word 0                 // code1
  .dword 0x200000         // text_offset: loaded at RAM base + 2 MiB = 0x80200000
  .dword __bss_end - 0x80200000  // image_size, bss included
  .dword 0                // flags
  .word 0x2               // header version 0.2
  .word 0                 // res1
  .dword 0                // res2
  .ascii "RISCV\0\0\0"   // magic (deprecated)
  .ascii "RSC\x05"        // magic2
  .word 0                 // res3
  .option pop
.Lafter_header:
  // The tests expect to boot on hart 0. OpenSBI's boot-hart lottery may pick another one:
  // hand over to hart 0 through HSM (registers only: bss is about to be cleared).
  bnez a0, .Lhand_over
  .option push
  .option norelax
  la gp, __global_pointer$
  .option pop
  mv s0, a0
  mv s1, a1
  la t0, __bss_start
  la t1, __bss_end
1:
  bgeu t0, t1, 2f
  sd zero, 0(t0)
  addi t0, t0, 8
  j 1b
2:
  la t0, rt_boot_a1
  sd s1, 0(t0)
  mv a0, s0
  call rt_setup_hart
  mv a0, s0
  call main
  call rt_finish
3:
  j 3b
.Lhand_over:
  mv a2, a1
  lla a1, _start
  li a0, 0
  li a6, 0
  li a7, 0x48534d
  ecall           // hart_start(0, _start, a1)
  li a6, 1
  li a7, 0x48534d
  ecall           // hart_stop
  j .Lhand_over

  .global rt_secondary_entry
rt_secondary_entry:
  .option push
  .option norelax
  la gp, __global_pointer$
  .option pop
  mv s0, a0
  call rt_setup_hart
  mv a0, s0
  call rt_secondary_main
4:
  j 4b

// a0 = hartid. Sets sp, tp, sscratch, stvec and FS=Initial. Keeps a0.
rt_setup_hart:
  li t0, STACK_SIZE
  addi t1, a0, 1
  mul t1, t1, t0
  la t2, rt_stacks
  add sp, t2, t1
  mv s2, ra
  mv s3, a0
  call rt_hart_init      // returns struct hart_data*
  mv tp, a0
  ld t0, 8(tp)
  csrw sscratch, t0
  la t0, rt_trap_vector
  csrw stvec, t0
  li t0, (1 << 13)
  csrs sstatus, t0
  mv a0, s3
  mv ra, s2
  ret

  .align 4
  .global rt_trap_vector
rt_trap_vector:
  csrrw sp, sscratch, sp
  addi sp, sp, -FRAME
  sd x1, 8(sp)
  sd x3, 24(sp)
  sd x4, 32(sp)
  sd x5, 40(sp)
  sd x6, 48(sp)
  sd x7, 56(sp)
  sd x8, 64(sp)
  sd x9, 72(sp)
  sd x10, 80(sp)
  sd x11, 88(sp)
  sd x12, 96(sp)
  sd x13, 104(sp)
  sd x14, 112(sp)
  sd x15, 120(sp)
  sd x16, 128(sp)
  sd x17, 136(sp)
  sd x18, 144(sp)
  sd x19, 152(sp)
  sd x20, 160(sp)
  sd x21, 168(sp)
  sd x22, 176(sp)
  sd x23, 184(sp)
  sd x24, 192(sp)
  sd x25, 200(sp)
  sd x26, 208(sp)
  sd x27, 216(sp)
  sd x28, 224(sp)
  sd x29, 232(sp)
  sd x30, 240(sp)
  sd x31, 248(sp)
  csrr t0, sscratch
  sd t0, 16(sp)
  csrr t0, sepc
  sd t0, 256(sp)
  csrr t0, sstatus
  sd t0, 264(sp)
  csrr t0, scause
  sd t0, 272(sp)
  csrr t0, stval
  sd t0, 280(sp)
  .option push
  .option norelax
  la gp, __global_pointer$
  .option pop
  mv a0, sp
  call rt_trap
  ld t0, 256(sp)
  csrw sepc, t0
  ld t0, 264(sp)
  csrw sstatus, t0
  addi t0, sp, FRAME
  csrw sscratch, t0
  ld x1, 8(sp)
  ld x3, 24(sp)
  ld x4, 32(sp)
  ld x5, 40(sp)
  ld x6, 48(sp)
  ld x7, 56(sp)
  ld x8, 64(sp)
  ld x9, 72(sp)
  ld x10, 80(sp)
  ld x11, 88(sp)
  ld x12, 96(sp)
  ld x13, 104(sp)
  ld x14, 112(sp)
  ld x15, 120(sp)
  ld x16, 128(sp)
  ld x17, 136(sp)
  ld x18, 144(sp)
  ld x19, 152(sp)
  ld x20, 160(sp)
  ld x21, 168(sp)
  ld x22, 176(sp)
  ld x23, 184(sp)
  ld x24, 192(sp)
  ld x25, 200(sp)
  ld x26, 208(sp)
  ld x27, 216(sp)
  ld x28, 224(sp)
  ld x29, 232(sp)
  ld x30, 240(sp)
  ld x31, 248(sp)
  ld sp, 16(sp)
  sret

// u64 rt_enter_user(u64 pc, u64 arg, u64 user_sp, u64 ra): sret to pc in U-mode with
// a0 = arg and ra = the exit stub.
  .global rt_enter_user
rt_enter_user:
  sd ra, CTX+0(tp)
  sd sp, CTX+8(tp)
  sd s0, CTX+16(tp)
  sd s1, CTX+24(tp)
  sd s2, CTX+32(tp)
  sd s3, CTX+40(tp)
  sd s4, CTX+48(tp)
  sd s5, CTX+56(tp)
  sd s6, CTX+64(tp)
  sd s7, CTX+72(tp)
  sd s8, CTX+80(tp)
  sd s9, CTX+88(tp)
  sd s10, CTX+96(tp)
  sd s11, CTX+104(tp)
  csrw sepc, a0
  li t0, (1 << 8)
  csrc sstatus, t0
  mv a0, a1
  mv sp, a2
  mv ra, a3              // returning from the U-mode function exits with its a0
  sret

// Called by the trap handler (on the trap stack) for the U-mode exit ecall: resumes the
// caller of rt_enter_user with a0 = value.
  .global rt_user_return
rt_user_return:
  ld t0, 8(tp)
  csrw sscratch, t0
  ld ra, CTX+0(tp)
  ld sp, CTX+8(tp)
  ld s0, CTX+16(tp)
  ld s1, CTX+24(tp)
  ld s2, CTX+32(tp)
  ld s3, CTX+40(tp)
  ld s4, CTX+48(tp)
  ld s5, CTX+56(tp)
  ld s6, CTX+64(tp)
  ld s7, CTX+72(tp)
  ld s8, CTX+80(tp)
  ld s9, CTX+88(tp)
  ld s10, CTX+96(tp)
  ld s11, CTX+104(tp)
  ret

  .global user_exit
user_exit:
  li a7, 0x55584954
  ecall
5:
  j 5b

  .bss
  .align 12
  .global rt_stacks
rt_stacks:
  .space STACK_SIZE * 8
