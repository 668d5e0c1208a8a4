#include "textflag.h"

// func compatSyscall(nr uint32) int32: system call nr through the 32-bit
// entry (int $0x80), as an i386 program would make it.
TEXT ·compatSyscall(SB),NOSPLIT,$0-12
	MOVL nr+0(FP), AX
	INT $0x80
	MOVL AX, ret+8(FP)
	RET

// func x32Syscall(nr uint32) int32: system call nr of the x32 table (its
// number with bit 30 set) through the 64-bit entry, as an x32 program
// would make it.
TEXT ·x32Syscall(SB),NOSPLIT,$0-12
	MOVL nr+0(FP), AX
	ORL $0x40000000, AX
	SYSCALL
	MOVL AX, ret+8(FP)
	RET
