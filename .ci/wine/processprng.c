/*
 * bcryptprimitives.dll for Wine 8: Go's runtime (since Go 1.22) draws its
 * random numbers from ProcessPrng, exported by bcryptprimitives.dll on
 * Windows 10 and later, and refuses to start without it. Wine 8 lacks the
 * export; this shim provides it over RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has.
 *
 * https://learn.microsoft.com/windows/win32/seccng/processprng
 * https://learn.microsoft.com/windows/win32/api/ntsecapi/nf-ntsecapi-rtlgenrandom
 */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	/* RtlGenRandom takes a ULONG length: feed it in slices. */
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!RtlGenRandom(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
