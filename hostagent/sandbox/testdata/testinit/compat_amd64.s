#include "textflag.h"

// func compatSyscall(nr uint32) int32: system call nr through the 32-bit
// entry (int $0x80), as an i386 program would make it.
TEXT ·compatSyscall(SB),NOSPLIT,$0-12
	MOVL nr+0(FP), AX
	INT $0x80
	MOVL AX, ret+8(FP)
	RET
